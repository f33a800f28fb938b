"""Rewrite an NNI script for torchslim: ``ast`` finds what to change, edits go into the original text.

Only the spans that change are replaced, so comments, layout and quoting stay as the user wrote
them. What is changed, and what cannot be translated (with line numbers), is reported.
"""
from __future__ import annotations

import ast
import difflib
import io
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from torchslim.migration import table

# full-width punctuation typed in Chinese editors: Python rejects it outside strings
_FULL_WIDTH = {"，": ",", "：": ":", "（": "(", "）": ")", "；": ";", "【": "[", "】": "]"}


@dataclass
class Note:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Migration:
    """The outcome for one source: the new text, what changed and what could not be translated."""

    path: str
    source: str
    result: str
    changes: list[Note] = field(default_factory=list)
    untranslated: list[Note] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.result != self.source

    def diff(self) -> str:
        """A unified diff from the NNI source to the torchslim one ('' if nothing changed)."""
        return "".join(difflib.unified_diff(
            self.source.splitlines(keepends=True), self.result.splitlines(keepends=True),
            fromfile=f"a/{self.path.lstrip('/')}", tofile=f"b/{self.path.lstrip('/')}",
        ))


def migrate_file(path: str | Path) -> Migration:
    """Migrate one file (Python; YAML experiment configs are only checked for remote services)."""
    path = Path(path)
    source = path.read_text(encoding="utf-8")
    if path.suffix in (".yml", ".yaml"):
        return _check_yaml(str(path), source)
    return migrate_source(source, str(path))


def migrate_source(source: str, path: str = "<source>") -> Migration:
    """Migrate Python source text."""
    migration = Migration(path, source, source)
    text = source
    try:
        tree = ast.parse(text)
    except SyntaxError:
        text, fixes = _fix_full_width(text)
        try:
            tree = ast.parse(text)
        except SyntaxError as exc:
            migration.untranslated.append(Note(exc.lineno or 0, f"not valid Python ({exc.msg}); nothing translated"))
            return migration
        migration.changes.extend(fixes)
    rewriter = _Rewriter(text)
    rewriter.visit(tree)
    migration.result = rewriter.apply()
    migration.changes.extend(rewriter.changes)
    migration.untranslated.extend(rewriter.untranslated)
    migration.changes.sort(key=lambda n: n.line)
    migration.untranslated.sort(key=lambda n: n.line)
    return migration


def _fix_full_width(text: str) -> tuple[str, list[Note]]:
    """Replace full-width punctuation outside strings and comments (where Python rejects it)."""
    lines = text.splitlines(keepends=True)
    fixes: list[Note] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text, fixes
    for tok in reversed(tokens):
        if tok.type == tokenize.ERRORTOKEN and tok.string in _FULL_WIDTH:
            row, col = tok.start
            line = lines[row - 1]
            lines[row - 1] = line[:col] + _FULL_WIDTH[tok.string] + line[col + 1:]
            fixes.append(Note(row, f"full-width {tok.string!r} replaced by {_FULL_WIDTH[tok.string]!r}"))
    return "".join(lines), fixes


def _check_yaml(path: str, source: str) -> Migration:
    migration = Migration(path, source, source)
    for number, line in enumerate(source.splitlines(), 1):
        key, _, value = line.partition(":")
        if key.strip() in ("trainingServicePlatform", "platform") and value.split("#")[0].strip() in table.REMOTE_SERVICES:
            migration.untranslated.append(Note(number, f"training service {value.strip()!r}: torchslim runs trials "
                                                       "locally (or on a Ray cluster: platform: ray)"))
    return migration


class _Rewriter(ast.NodeVisitor):
    """Collects (start, end, replacement) edits on the source text, and notes."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))
        self.edits: list[tuple[int, int, str]] = []
        self.changes: list[Note] = []
        self.untranslated: list[Note] = []
        self.nni_names = {"nni"}  # names bound to the nni package (import nni, import nni as x)
        self.needed_imports: set[str] = set()  # modules a rewritten dotted name needs imported
        self.first_statement = 0  # where to add those imports
        self.renamed = table.renamed()

    # --- positions -----------------------------------------------------------------------------
    def offset(self, line: int, col: int) -> int:
        """Character offset of ``ast``'s (line, UTF-8 byte column)."""
        text = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        return self.starts[line - 1] + len(text.encode("utf-8")[:col].decode("utf-8", errors="ignore"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def replace(self, start: int, end: int, text: str) -> None:
        self.edits.append((start, end, text))

    def visit_Module(self, node: ast.Module) -> None:
        body = list(node.body)
        while body and (_is_docstring(body[0]) or (isinstance(body[0], ast.ImportFrom) and body[0].module == "__future__")):
            self.first_statement = self.offset(body[0].end_lineno + 1, 0) if body[0].end_lineno < len(self.lines) else len(self.text)
            body.pop(0)
        if body:
            self.first_statement = self.offset(body[0].lineno, 0)
        self.generic_visit(node)

    def apply(self) -> str:
        for module in sorted(self.needed_imports):
            self.replace(self.first_statement, self.first_statement, f"import {module}\n")
            self.changes.append(Note(1, f"import {module} added"))
        out = self.text
        last = len(out) + 1
        for start, end, text in sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True):
            if end > last:  # overlaps an edit already applied (the outer statement was rewritten)
                continue
            out = out[:start] + text + out[end:]
            last = start
        return out

    # --- imports ---------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        parts, changed = [], False
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in table.TENSORFLOW_MODULES:
                self.untranslated.append(Note(node.lineno, f"TensorFlow code (import {alias.name}): torchslim "
                                                           "compresses PyTorch models only"))
            row = table.lookup(alias.name)
            if row is None:
                parts.append(_alias_text(alias.name, alias.asname))
                continue
            prefix, target = row
            if isinstance(target, str):
                self.untranslated.append(Note(node.lineno, f"import {alias.name}: {target}"))
                parts.append(_alias_text(alias.name, alias.asname))
            elif alias.name == "nni":
                parts.append(_alias_text("torchslim", alias.asname))
                changed = True
                if alias.asname:
                    self.nni_names.add(alias.asname)
            elif alias.asname:
                parts.append(_alias_text(target[0], alias.asname))
                changed = True
            else:
                self.untranslated.append(Note(node.lineno, f"import {alias.name} (used as a dotted name): write "
                                                           f"import {target[0]}"))
                parts.append(_alias_text(alias.name, None))
        if changed:
            start, end = self.span(node)
            self.replace(start, end, "import " + ", ".join(parts))
            self.changes.append(Note(node.lineno, "import nni → torchslim"))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        row = table.lookup(node.module or "") if node.level == 0 else None
        if row is None:
            return
        prefix, target = row
        if isinstance(target, str):
            self.untranslated.append(Note(node.lineno, f"from {node.module} import ...: {target}"))
            return
        groups: dict[str, list[str]] = {}
        for alias in node.names:
            if alias.name == "*":
                for module in (table.STAR_MODULES if target[0] != "torchslim" else ["torchslim"]):
                    groups.setdefault(module, []).append("*")
                continue
            new = self.renamed.get(alias.name, alias.name)
            home = table.home_of(new, target)
            if home is None:
                self.untranslated.append(Note(node.lineno, f"{alias.name} (from {node.module}) has no torchslim "
                                                           "equivalent"))
                groups.setdefault(node.module, []).append(_alias_text(alias.name, alias.asname))
                continue
            groups.setdefault(home, []).append(_alias_text(new, alias.asname))
        indent = " " * len(self.lines[node.lineno - 1].encode()[:node.col_offset].decode(errors="ignore"))
        text = ("\n" + indent).join(f"from {module} import {', '.join(names)}" for module, names in groups.items())
        start, end = self.span(node)
        self.replace(start, end, text)
        self.changes.append(Note(node.lineno, f"from {node.module} → " + ", ".join(m for m in groups if m != node.module)))

    # --- names -----------------------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.renamed:
            start, end = self.span(node)
            self.replace(start, end, self.renamed[node.id])
            self.changes.append(Note(node.lineno, f"{node.id} → {self.renamed[node.id]}"))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _dotted(node)
        if chain and chain[0] in self.nni_names and len(chain) >= 2:
            self._nni_chain(node, chain)  # handled whole: its inner attributes are not visited
            return
        if node.attr in self.renamed:
            end = self.offset(node.end_lineno, node.end_col_offset)
            self.replace(end - len(node.attr), end, self.renamed[node.attr])
            self.changes.append(Note(node.lineno, f"{node.attr} → {self.renamed[node.attr]}"))
        self.generic_visit(node)

    def _nni_chain(self, node: ast.Attribute, chain: list[str]) -> None:
        """``nni.<name>...``: a top-level torchslim name, or a module path that cannot be translated."""
        inner = node
        while isinstance(inner.value, ast.Attribute):
            inner = inner.value
        new = self.renamed.get(chain[1], chain[1])
        if new in table.public_names("torchslim"):
            if chain[0] == "nni":  # 'import nni as x' became 'import torchslim as x': x.<name> already works
                start, end = self.span(inner)
                self.replace(start, end, f"torchslim.{new}")
                self.changes.append(Note(node.lineno, f"nni.{chain[1]} → torchslim.{new}"))
            for arg in ast.iter_child_nodes(node):
                if arg is not node.value:
                    self.visit(arg)
            return
        row = table.lookup(".".join(["nni", *chain[1:-1]]))
        if row is not None and not isinstance(row[1], str) and chain[0] == "nni":
            name = self.renamed.get(chain[-1], chain[-1])
            home = table.home_of(name, row[1])
            if home is not None:  # nni.compression.torch.Pruner -> torchslim.pruning.Pruner
                start, end = self.span(node)
                self.replace(start, end, f"{home}.{name}")
                self.needed_imports.add(home)
                self.changes.append(Note(node.lineno, f"{'.'.join(chain)} → {home}.{name}"))
                return
        row = table.lookup(".".join(["nni", *chain[1:]]))
        reason = row[1] if row and isinstance(row[1], str) else "no torchslim equivalent"
        self.untranslated.append(Note(node.lineno, f"{'.'.join(chain)}: {reason}"))

    # --- config_list keys and training services -------------------------------------------------------
    def visit_Dict(self, node: ast.Dict) -> None:
        keys = {k.value: (k, v) for k, v in zip(node.keys, node.values)
                if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        if any(k in keys for k in table.SELECTOR_KEYS) and not any(k in keys for k in table.QUANT_KEYS):
            for old, new in table.KEY_RENAMES.items():
                if old in keys and new not in keys:
                    self._rename_key(keys[old][0], new)
            if "op_name" in keys and "op_names" not in keys:
                key, value = keys["op_name"]
                self._rename_key(key, "op_names")
                start, end = self.span(value)
                self.replace(start, start, "[")
                self.replace(end, end, "]")
        self.generic_visit(node)

    def _rename_key(self, key: ast.Constant, new: str) -> None:
        start, end = self.span(key)
        quote = self.text[start]
        self.replace(start, end, f"{quote}{new}{quote}")
        self.changes.append(Note(key.lineno, f"config key '{key.value}' → '{new}'"))

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        if name and len(name) == 2 and name[0] in self.nni_names and name[1] == "trace" and len(node.args) == 1 \
                and not node.keywords:
            # nni.trace(Adam)(...) is Adam(...) for torchslim: it hooks plain instances
            start, end = self.span(node)
            arg_start, arg_end = self.span(node.args[0])
            self.replace(start, arg_start, "")
            self.replace(arg_end, end, "")
            self.changes.append(Note(node.lineno, "nni.trace(x) → x (torchslim needs no traced objects)"))
            self.visit(node.args[0])
            return
        values = [*node.args, *(k.value for k in node.keywords if k.arg in ("platform", "training_service"))]
        if name and name[-1] == "Experiment" and values:
            for value in values:
                if isinstance(value, ast.Constant) and value.value in table.REMOTE_SERVICES:
                    self._remote(node.lineno, value.value)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        value = node.value
        if isinstance(value, ast.Constant) and value.value in table.REMOTE_SERVICES:
            if any("training_service" in (_dotted(t) or []) for t in node.targets):
                self._remote(node.lineno, value.value)
        self.generic_visit(node)

    def _remote(self, line: int, service: str) -> None:
        self.untranslated.append(Note(line, f"training service {service!r}: torchslim runs trials locally "
                                            "(or on a Ray cluster)"))


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _alias_text(name: str, asname: str | None) -> str:
    return f"{name} as {asname}" if asname else name


__all__ = ["Migration", "Note", "migrate_file", "migrate_source"]
