"""The internal vocabulary every API is translated to and from: a turn in, events out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["openai", "anthropic", "responses"]
Role = Literal["user", "assistant"]


# ---- what a request asks for ----


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    media_type: str
    data: str  # base64, no data: prefix


@dataclass(frozen=True, slots=True)
class ToolUsePart:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    tool_use_id: str
    content: tuple[TextPart | ImagePart, ...]
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ThinkingPart:
    thinking: str
    signature: str


Part = TextPart | ImagePart | ToolUsePart | ToolResultPart | ThinkingPart


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A client-declared function tool, offered to the model as a real definition.

    `name` is what the model calls. Two Responses API kinds of tool are offered as
    functions too, and told apart only when an answer goes back to the client (which
    is why they take no part in comparisons):
    - a function in a `namespace`: the model sees "<namespace>__<name>";
    - a `custom` tool (free text in, no JSON): one string argument, `input`.
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    namespace: str | None = field(default=None, compare=False)
    freeform: bool = field(default=False, compare=False)

    @property
    def client_name(self) -> str:
        """The name the client declared (without its namespace)."""
        if self.namespace is None:
            return self.name
        return self.name.removeprefix(self.namespace + NAMESPACE_SEPARATOR)


# Between a namespace and a tool's name in the name the model sees.
NAMESPACE_SEPARATOR = "__"


ToolChoiceMode = Literal["auto", "none", "required", "tool"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: ToolChoiceMode
    name: str | None = None  # the tool to call when mode is "tool"


Effort = Literal["low", "medium", "high", "xhigh", "max"]


@dataclass(frozen=True, slots=True)
class Subagent:
    name: str
    description: str
    prompt: str
    tools: tuple[str, ...] | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class AgentRequest:
    """What a request asks of agent mode, as sent (not yet checked against settings)."""

    working_directory: str | None = None
    # The built-in tools to offer; None leaves Claude Code's own default set.
    tools: tuple[str, ...] | None = None
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    permission_mode: str | None = None
    agents: tuple[Subagent, ...] = ()
    agent: str | None = None
    mcp_servers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Turn:
    """One request, normalised: earlier messages, the new user message, and options.

    `history` alternates user/assistant and starts with a user message; `prompt` is the
    user message the CLI is asked to answer now.
    """

    api: Api
    model: str  # as the client asked for it
    system: str | None
    history: tuple[Message, ...]
    prompt: tuple[Part, ...]
    stream: bool
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    include_usage: bool = False
    # Fields the request set that the runtime cannot honour (for logs and headers).
    ignored: tuple[str, ...] = ()
    user: str | None = None
    # Client tools (function calling); the client runs them, never the CLI.
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # Structured output: the reply must be a JSON document matching this schema.
    output_schema: dict[str, Any] | None = None
    # Where the request carried it ("output_config.format.schema"), to name it when the
    # CLI refuses the schema.
    output_schema_field: str | None = None
    # Reasoning: an effort level, and/or an explicit thinking budget (0 = thinking off).
    effort: Effort | None = None
    thinking_budget: int | None = None
    # Session control: an explicit session to continue, and "keep nothing".
    session_id: str | None = None
    previous_response_id: str | None = None
    ephemeral: bool = False
    # Responses API `store`: false means the answer cannot be named by a later
    # previous_response_id (the conversation itself is still kept; see README).
    store: bool = True
    # claude-tray's own extensions (protocol/extensions.py).
    agent: AgentRequest | None = None  # agent mode was asked for
    max_budget_usd: float | None = None
    fallback_model: str | None = None
    continue_conversation: bool = False


# ---- what the CLI reports (parsed from stream-json lines) ----


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """Every input token, cached or not (what OpenAI calls prompt_tokens)."""
        return self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session_id: str
    model: str


@dataclass(frozen=True, slots=True)
class MessageStarted:
    message_id: str
    model: str
    usage: Usage


BlockKind = Literal["text", "thinking", "redacted_thinking", "tool_use"]


@dataclass(frozen=True, slots=True)
class BlockStarted:
    index: int
    kind: BlockKind
    id: str = ""
    name: str = ""
    data: str = ""  # redacted_thinking payload


@dataclass(frozen=True, slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    index: int
    thinking: str


@dataclass(frozen=True, slots=True)
class SignatureDelta:
    index: int
    signature: str


@dataclass(frozen=True, slots=True)
class ToolInputDelta:
    index: int
    partial_json: str


@dataclass(frozen=True, slots=True)
class BlockStopped:
    index: int


@dataclass(frozen=True, slots=True)
class MessageDelta:
    stop_reason: str | None
    stop_sequence: str | None
    output_tokens: int


@dataclass(frozen=True, slots=True)
class QuotaWindow:
    """One of the plan's usage windows (five_hour, seven_day, ...)."""

    name: str
    utilization: float | None
    resets_at: int | None


@dataclass(frozen=True, slots=True)
class RateLimitReported:
    """The CLI's view of the plan's limits after a call (subscription sign-in only)."""

    status: str  # allowed | allowed_warning | rejected
    window: str | None
    resets_at: int | None
    utilization: float | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    # The call was billed as extra usage (the plan's window is used up, overage allowed).
    using_overage: bool = False
    windows: tuple[QuotaWindow, ...] = ()


@dataclass(frozen=True, slots=True)
class ErrorReported:
    """The CLI's placeholder answer for a failed call; `kind` is its machine-readable
    `error` field (authentication_failed, rate_limit, server_error, ...)."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class ToolFinished:
    """One of the CLI's own tools (agent mode) answered; `summary` is its start."""

    tool_use_id: str
    is_error: bool
    summary: str


@dataclass(frozen=True, slots=True)
class CallAbandoned:
    """A model call broke off mid-stream and the CLI's retry answered anew instead of
    continuing it: what was streamed of that call is not part of the answer. The cut
    call's open blocks are stopped next, then the retry follows as a new message."""


@dataclass(frozen=True, slots=True)
class TurnCompleted:
    """The CLI's `result` line: the turn is over, successfully or not."""

    session_id: str
    is_error: bool
    usage: Usage
    cost_usd: float | None
    stop_reason: str | None
    result_text: str
    num_turns: int
    api_error_status: int | None = None
    subtype: str = "success"
    # The JSON document of a structured-output turn (None when there is none).
    structured_output: Any = field(default=None, compare=False)


CliEvent = (
    SessionStarted
    | MessageStarted
    | BlockStarted
    | TextDelta
    | ThinkingDelta
    | SignatureDelta
    | ToolInputDelta
    | BlockStopped
    | CallAbandoned
    | MessageDelta
    | RateLimitReported
    | ErrorReported
    | ToolFinished
    | TurnCompleted
)
