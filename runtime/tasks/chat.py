"""Chat messages -> prompt text with a model's Jinja chat template, rendered as transformers renders it.

The template comes from the bundle (the model's own, written by its authors), so it runs in jinja2's immutable
sandbox with the helpers transformers gives templates: `raise_exception`, `strftime_now`, a `tojson` that does not
escape HTML, loop controls (`{% break %}`), and the `{% generation %}` block (assistant-mask marker, rendered as is).
"""

from __future__ import annotations

from typing import Any

from runtime.errors import InvalidInputError


class ChatTemplate:
    def __init__(self, source: str, special_tokens: dict[str, Any]) -> None:
        self.source = source
        self.special_tokens = special_tokens  # bos_token, eos_token, ...: what transformers passes as template kwargs
        self._compiled: Any = None

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt for `messages` with the generation prompt added (`add_generation_prompt=True`).

        Raises:
            InvalidInputError: the template refuses the messages (raise_exception) or does not compile.
        """
        from jinja2.exceptions import TemplateError

        if self._compiled is None:  # compiled on first use: a bundle served with plain prompts never pays for it
            self._compiled = _compile(self.source)
        try:
            return self._compiled.render(
                messages=messages, tools=None, documents=None, add_generation_prompt=True, **self.special_tokens
            )
        except TemplateError as e:
            raise InvalidInputError(f"the chat messages do not fit the model's chat template: {e}") from None


def _compile(source: str) -> Any:
    """The template compiled in an immutable sandbox with the helpers transformers gives templates."""
    import json
    from datetime import datetime

    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(
        x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
    ) -> str:  # jinja's own tojson escapes HTML characters; transformers' does not
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    class GenerationBlock(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; here it renders as is."""

        tags = {"generation"}  # noqa: RUF012 - jinja2 declares this class attribute as a set

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body).set_lineno(lineno)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, "jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise InvalidInputError(f"the model's chat template does not compile ({e}); send plain text inputs") from None
