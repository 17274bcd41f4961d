"""Fixed prompts shared by the genai_lab scripts (no dependencies, importable from any venv)."""

SPEED_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."

FIDELITY_PROMPTS = [
    SPEED_PROMPT,
    "What is the capital of France? Answer in one sentence, then tell me one fact about it.",
    "Explain how photosynthesis works to a ten-year-old.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "List five tips for staying focused while studying.",
    "Translate into French: The weather is nice today and I would like to go for a walk.",
    "What is 17 multiplied by 23? Show your reasoning.",
    "Summarise the plot of Romeo and Juliet in three sentences.",
    "Give me a recipe for a simple tomato soup.",
    "Why is the sky blue?",
    "Write a haiku about autumn leaves.",
    "Describe the difference between a list and a tuple in Python.",
]

NEW_TOKENS = 64
