"""The rsyslog configuration (`rsyslog`): /etc/rsyslog.conf and what it includes, read as
rsyslogd reads them (the lexer is rsyslog_lexer): the file actions' creation modes, the
modules and inputs loaded, and where forwarding actions send."""

from __future__ import annotations

import re
import stat
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.regex import compile_regex
from secpolicy.dsl.types import BOOL, REGEX, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import C_SPACE, at
from secpolicy.facts.rsyslog_lexer import ACTION, BRACE, OBJECT, config_scan, syntax_error

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["RSYSLOG", "Rsyslog", "register"]


# --- rsyslog ------------------------------------------------------------------------------------------
RSYSLOG = ObjectType(
    "rsyslog",
    {
        "exists": BOOL,
        "lines": ListType(STR),
        "file_create_mode": STR,
        "file_modes": ListType(STR),
        "modules": ListType(STR),
        "inputs": ListType(STR),
        "forward_targets": ListType(STR),
        "files": ListType(STR),
    },
    methods={"has_line": Method((REGEX,), BOOL, "whether some configuration line matches a regex")},
    doc="rsyslog configuration: rsyslog.conf and the files it includes, comments stripped",
    field_docs={
        "lines": "the statement lines rsyslogd reads; an object (`action(...)`, `module(...)`) over several "
        "lines is one line",
        "file_create_mode": "the $FileCreateMode in force at the end of the configuration, as rsyslogd reads it "
        "(`0` and three octal digits; anything else is refused; $ResetConfigVariables goes back to the default)",
        "file_modes": "the mode each file action creates its file with, in order: a legacy action (`/path`, "
        "`-/path`, `?template`) takes the $FileCreateMode in force where it stands (0644 before any), an "
        'action(type="omfile") its fileCreateMode, else module(load="builtin:omfile")\'s fileCreateMode read '
        "before it, else 0644 (the mode rsyslogd asks open() for: a umask may take bits off)",
        "modules": 'the modules loaded (module(load=...) and $ModLoad), as names: "imtcp" for '
        '"/usr/lib/x86_64-linux-gnu/rsyslog/imtcp.so"',
        "inputs": "the inputs started: input(type=...), and imtcp, imptcp, imudp, imrelp or imgssapi for the "
        "legacy $InputTCPServerRun, $InputPTCPServerRun, $UDPServerRun, $InputRELPServerRun, $InputGSSServerRun",
        "forward_targets": "the hosts the forwarding actions rsyslogd runs send to: omfwd and omrelp actions' target, "
        "legacy @host and @@host; not those after a discard of every message (`*.* stop`, `*.* ~`) in the "
        "default ruleset",
    },
)


# rsyslog.conf and its includes, in all (Debian's is 1.4 kB): lexing hostile text costs up to
# about 4 CPU s per MiB.
_RSYSLOG_BYTES = 1 << 20
_DISCARD_ALL = "discard"  # a `*.* stop` or `*.* ~` line
# The legacy directives that start a network input, and the module whose input they start.
_RSYSLOG_LEGACY_INPUTS = {
    "$inputtcpserverrun": "imtcp",
    "$inputptcpserverrun": "imptcp",
    "$udpserverrun": "imudp",
    "$inputudpserverrun": "imudp",
    "$inputrelpserverrun": "imrelp",
    "$inputgssserverrun": "imgssapi",
}
_RSYSLOG_PARAM = re.compile(r'([a-z][a-z0-9_.]*)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|\[[^\]]*\])', re.IGNORECASE)
_RSYSLOG_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _rsyslog_object(text: str) -> tuple[str, dict[str, list[str]]]:
    """(the object's name, its parameters by lower-case name, each a list of its values: one
    for a string, the strings of an array) of an object's text `name(p="v" q=["a", "b"])`."""
    name, _, body = text.partition("(")
    params: dict[str, list[str]] = {}
    for m in _RSYSLOG_PARAM.finditer(body):
        values = [re.sub(r"\\(.)", r"\1", v) for v in _RSYSLOG_STRING.findall(m.group(2))]
        params[m.group(1).lower()] = values
    return name.strip(C_SPACE).lower(), params


def _rsyslog_module(name: str) -> str:
    """A module's name as `load=`, `type=` or $ModLoad give it, bare: rsyslogd takes a path or
    a `.so` name for the same module, and `builtin:` for the ones compiled in."""
    base = name.strip(C_SPACE).removeprefix("builtin:").rsplit("/", 1)[-1]
    return base.removesuffix(".so").lower()


def _rsyslog_mode(value: str, legacy: bool = False) -> str | None:
    """A file mode as rsyslogd takes it: `0` and three octal digits; $FileCreateMode reads
    those four and ignores what follows them, an object's parameter must be exactly them."""
    m = re.match(r"0[0-7]{3}" + ("" if legacy else "$"), value.strip(C_SPACE) if legacy else value)
    return m.group(0) if m else None


def _unknown_type(obj: str, params: dict[str, list[str]], modules: list[str]) -> bool:
    """Whether the module an input() or action() names is neither built in (outputs) nor
    loaded before it: rsyslogd then skips the statement."""
    name = _rsyslog_module(params["type"][0]) if params.get("type") else ""
    return bool(name) and name not in modules and not (obj == "action" and name in _BUILTIN_OUTPUTS)


def _rsyslog_object_mode(value: str) -> str | None:
    """An object's file mode parameter as rsyslogd takes it (doGetFileCreateMode): `0` and
    three octal digits, and a fourth where it is five characters long; None where refused."""
    if not re.match(r"0[0-7]{3}", value):
        return None
    if len(value) == 5:
        return value if value[4] in "01234567" else None
    return value[:4]


def _rsyslog_legacy_target(action: str) -> str:
    """The host of a legacy forwarding action: `@host`, `@@(o,z9)host:port;template`,
    `@[::1]:514`."""
    rest = re.sub(r"^@@?(\([^)]*\))?", "", action)
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return re.split(r"[:;\s]", rest, maxsplit=1)[0]


class _Stop(Exception):
    """rsyslogd reads nothing after this point (an include it cannot read)."""


# The output modules rsyslogd has built in (loadBuildInModules): an action of any other type
# needs its module loaded before it.
_BUILTIN_OUTPUTS = {"omfile", "ompipe", "omdiscard", "omfwd", "omusrmsg"}


class Rsyslog:
    def __init__(self, ctx: FactContext) -> None:
        self._ctx = ctx
        self._budget = _RSYSLOG_BYTES
        self._lines: list[tuple[str, str]] = []
        self._items: list[tuple[str, str, str]] = []  # (kind, text, where): objects, actions, $ lines, in order
        self._tokens: list[tuple[str, str]] = []  # (kind, where): the parser's tokens over all files, in order
        self._main_end = "/etc/rsyslog.conf:1"  # where rsyslogd places the end of its input
        self.files: list[str] = []
        self.exists = ctx.stat("/etc/rsyslog.conf") is not None
        stop = None
        try:
            self._read("/etc/rsyslog.conf", 0)
        except _Stop as e:
            stop = str(e)
        bad = syntax_error([(k, "", 0) for k, _ in self._tokens])
        if bad is not None:  # rsyslogd: "could not interpret master config file"
            where = self._tokens[bad][1] if bad < len(self._tokens) else self._main_end
            raise EvaluationError(
                f"{where}: rsyslogd cannot interpret the configuration (a syntax error on or before this line): "
                "it runs only the statements before the error, none of those after it")
        if stop is not None:
            raise EvaluationError(stop)
        self.lines = tuple(t for t, _ in self._lines)
        self._statements()

    def _read(self, path: str, depth: int) -> None:
        if depth > 8:
            raise EvaluationError(f"{path}: rsyslog includes nested too deep")
        st = self._ctx.stat(path)
        if st is not None and st.st_size > self._budget:
            raise EvaluationError(f"{path}: rsyslog configuration beyond {_RSYSLOG_BYTES} bytes in all, not read")
        data = self._ctx.read_bytes(path, limit=self._budget)
        if data is None:
            return
        self._budget -= len(data)
        self.files.append(path)
        text = data.decode("utf-8", errors="surrogateescape")
        statements, tokens = config_scan(text)  # as rsyslogd's preprocessor and lexer read it
        if depth == 0:
            self._main_end = at(path, text.count("\n") + 1)
        pending = iter(tokens)

        def upto_include(n: int) -> None:
            """The parser's tokens of this file up to the end of its include on line n: the
            included files' tokens come next, as the lexer reads them."""
            inside = False  # in an include(...) object
            for kind, _, line in pending:
                self._tokens.append((kind, at(path, line)))
                end = kind == "INCLUDECONFIG" or (kind == "ENDOBJ" and inside)
                inside = kind == "BEGIN_INCLUDE" or (inside and kind != "ENDOBJ")
                if end and line >= n:
                    return

        for n, line, items in statements:
            self._lines.append((line, at(path, n)))
            self._items.extend((k, t, at(path, n)) for k, t in (items if not line.startswith("$") else (("$", line),)))
            if re.fullmatch(r"\*\.\*[ \t]+(?:stop|~)", line, re.IGNORECASE):  # every message discarded here
                self._items.append((_DISCARD_ALL, line, at(path, n)))
            legacy = re.match(r"\$IncludeConfig\s+(\S+)", line, re.IGNORECASE)
            inc = legacy or re.match(r'include\([^)]*?\bfile\s*=\s*"([^"]+)"', line)
            if inc:
                upto_include(n)
                pattern = inc.group(1)
                if not any(c in pattern for c in "*?[") and self._ctx.stat(pattern) is None:
                    if legacy:  # cnfDoInclude fails and the lexer ends its input there (yyterminate)
                        raise _Stop(
                            f"{at(path, n)}: rsyslogd cannot read the $IncludeConfig file {pattern}: it reads nothing "
                            "after this line (and does not start at all where no action comes before it)")
                    if re.search(r'\bmode\s*=\s*"abort-if-missing"', line):
                        raise _Stop(f"{at(path, n)}: {pattern} is missing and its include() says "
                                    'mode="abort-if-missing": rsyslogd exits instead of starting')
                for t in self._included(pattern):
                    self._read(t, depth + 1)
        self._tokens.extend((kind, at(path, line)) for kind, _, line in pending)

    def _statements(self) -> None:
        """What rsyslogd makes of the statements, in the order it reads them: a legacy action
        takes the legacy settings in force where it stands, an action() the module's settings
        read before it (omfile's parseSelectorAct and setInstParamDefaults)."""
        legacy: tuple[str, str] | None = None  # ($FileCreateMode, where); None: the default 0644
        module_mode = "0644"  # module(load="builtin:omfile" fileCreateMode=...)
        modes: list[tuple[str, str]] = []
        modules: list[str] = []
        inputs: list[str] = []
        loads: list[str] = []  # where modules are loaded or inputs started
        targets: list[tuple[str, str]] = []
        blocks: list[bool] = []  # open braces: whether each opens a ruleset's
        last_object, ruleset, discarded = "", "", False  # ruleset: the legacy $RuleSet ("" the default)
        for kind, text, where in self._items:
            main = not ruleset and not any(blocks)  # in the default ruleset
            if kind == "$":
                name, _, arg = text.partition(" ")
                name, arg = name.lower(), arg.strip(C_SPACE)
                if name == "$filecreatemode":
                    mode = _rsyslog_mode(arg, legacy=True)
                    legacy = (mode, where) if mode is not None else legacy  # refused: the one before stays
                elif name == "$resetconfigvariables":
                    legacy = None
                elif name == "$modload" and arg:
                    modules.append(_rsyslog_module(arg.split()[0]))
                    loads.append(where)
                elif name in _RSYSLOG_LEGACY_INPUTS and _RSYSLOG_LEGACY_INPUTS[name] in modules:
                    inputs.append(_RSYSLOG_LEGACY_INPUTS[name])  # without its module: an unknown directive, skipped
                    loads.append(where)
                elif name == "$ruleset":
                    ruleset = "" if arg.split()[:1] == ["RSYSLOG_DefaultRuleset"] else arg
            elif kind == BRACE:
                if text == "{":
                    blocks.append(last_object == "ruleset")
                elif blocks:
                    blocks.pop()
            elif kind == OBJECT:
                obj, params = _rsyslog_object(text)
                last_object = obj
                if obj in ("module", "input") and (params.get("load") or params.get("type")):
                    loads.append(where)
                if obj == "module" and params.get("load"):
                    modules.append(_rsyslog_module(params["load"][0]))
                    if modules[-1] == "omfile" and params.get("filecreatemode"):
                        module_mode = _rsyslog_mode(params["filecreatemode"][0]) or params["filecreatemode"][0]
                elif obj in ("input", "action") and _unknown_type(obj, params, modules):
                    continue  # "module name is unknown": rsyslogd skips the statement
                elif obj == "input" and params.get("type"):
                    inputs.append(_rsyslog_module(params["type"][0]))
                elif obj == "action" and params.get("type"):
                    output = _rsyslog_module(params["type"][0])
                    if output == "omfile":
                        given = params.get("filecreatemode")
                        mode = _rsyslog_object_mode(given[0]) if given else module_mode
                        if mode is not None:  # a mode refused: rsyslogd skips the action
                            modes.append((mode, where))
                    elif output in ("omfwd", "omrelp") and not (discarded and main):
                        targets.extend((t, where) for t in params.get("target", ()) if t)
            elif kind == ACTION:
                last_object = ""
                act = text.removeprefix("-")
                if act[:1] in ("/", "?", "."):  # omfile's
                    modes.append((legacy[0] if legacy else "0644", where))
                elif act.startswith("@") and not (discarded and main) and (target := _rsyslog_legacy_target(act)):
                    targets.append((target, where))
            elif kind == _DISCARD_ALL and main:
                discarded = True
        self.file_create_mode = legacy[0] if legacy else None
        self._mode_where = legacy[1] if legacy else "/etc/rsyslog.conf (no $FileCreateMode: rsyslog's default 0644)"
        self.file_modes = tuple(m for m, _ in modes)
        self.modules = tuple(modules)
        self.inputs = tuple(inputs)
        self.forward_targets = tuple(t for t, _ in targets)
        self._where_list = {
            "file_modes": ", ".join(dict.fromkeys(w for _, w in modes)) or "no file action",
            "forward_targets": ", ".join(dict.fromkeys(w for _, w in targets)) or "no forwarding action",
            "modules": ", ".join(dict.fromkeys(loads)) or ", ".join(self.files) or "/etc/rsyslog.conf (absent)",
        }
        self._where_list["inputs"] = self._where_list["modules"]

    def _included(self, pattern: str) -> list[str]:
        """The files an include names, in the order rsyslog reads them: a glob(3) pattern (no
        hidden files), every file of a directory, or one file."""
        if any(c in pattern for c in "*?["):
            return self._ctx.glob(pattern)
        st = self._ctx.stat(pattern)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return [f"{pattern.rstrip('/')}/{n}" for n in self._ctx.listdir(pattern) if not n.startswith(".")]
        return [pattern]

    def has_line(self, regex: str) -> bool:
        rx = compile_regex(regex)
        return any(rx.search(t) for t, _ in self._lines)

    def describe(self) -> str:
        return "rsyslog"

    def where(self, name: str, *args: Any) -> str | None:
        if name == "has_line" and args:
            rx = compile_regex(str(args[0]))
            hit = next((w for t, w in self._lines if rx.search(t)), None)
            return hit or ", ".join(self.files) or "/etc/rsyslog.conf (absent)"
        if name == "file_create_mode":
            return self._mode_where
        if name in self._where_list:
            return self._where_list[name]
        return "/etc/rsyslog.conf"


def register(reg: FactRegistry) -> None:
    reg.register("rsyslog", Rsyslog, returns=RSYSLOG, doc="rsyslog configuration")
