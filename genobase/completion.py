"""``genobase completion bash|zsh|fish``: a completion script made from the argparse tree itself,
so that every command and option the parser knows completes, and nothing else.

The scripts are static (no Python runs at each TAB): the commands, their options and the options'
fixed choices are written into the script; anything else completes as a file name. zsh loads the
bash script through ``bashcompinit``.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field

SHELLS = ("bash", "zsh", "fish")


@dataclass
class Node:
    """A command (or the program itself): its subcommands, options and the options' choices."""

    path: tuple[str, ...]
    help: str = ""
    subcommands: dict[str, Node] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)  # option string -> help
    choices: dict[str, list[str]] = field(default_factory=dict)  # option string -> its choices
    takes_value: set[str] = field(default_factory=set)
    values: list[str] = field(default_factory=list)  # a positional argument's fixed choices


def tree(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Node:
    node = Node(path, parser.description or "")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                child = tree(sub, (*path, name))
                child.help = helps.get(name, "")
                node.subcommands[name] = child
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if not action.option_strings and action.choices is not None:
            node.values += [str(choice) for choice in action.choices]
        for option in action.option_strings:
            node.options[option] = action.help or ""
            if action.nargs != 0:
                node.takes_value.add(option)
            if action.choices is not None:
                node.choices[option] = [str(choice) for choice in action.choices]
    return node


def _walk(node: Node) -> list[Node]:
    return [node, *(n for child in node.subcommands.values() for n in _walk(child))]


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    root = tree(parser)
    prog = parser.prog
    if shell == "bash":
        return _bash(root, prog)
    if shell == "zsh":
        return f"#compdef {prog}\nautoload -U +X bashcompinit && bashcompinit\n" + _bash(root, prog)
    if shell == "fish":
        return _fish(root, prog)
    raise ValueError(f"unknown shell {shell!r}")


def _function(prog: str) -> str:
    return "_" + "".join(c if c.isalnum() else "_" for c in prog)


def _bash(root: Node, prog: str) -> str:
    fn = _function(prog)
    subs, opts, choices = [], [], []
    for node in _walk(root):
        key = shlex.quote(" ".join(node.path))
        if words := [*node.subcommands, *node.values]:
            subs.append(f"        {key}) echo {shlex.quote(' '.join(words))} ;;")
        opts.append(f"        {key}) echo {shlex.quote(' '.join(node.options))} ;;")
        for option, values in node.choices.items():
            choices.append(
                f"        {shlex.quote(' '.join((*node.path, option)))}) echo {shlex.quote(' '.join(values))} ;;"
            )
    return f"""# {prog} completion for bash (made by `{prog} completion bash`)
{fn}_subcommands() {{
    case "$1" in
{chr(10).join(subs)}
    esac
}}
{fn}_options() {{
    case "$1" in
{chr(10).join(opts)}
    esac
}}
{fn}_choices() {{
    case "$1" in
{chr(10).join(choices)}
    esac
}}
{fn}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" path="" word i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        case " $({fn}_subcommands "$path") " in
            *" $word "*) path="${{path:+$path }}$word" ;;
        esac
    done
    local values
    values="$({fn}_choices "${{path:+$path }}$prev")"
    if [[ -n "$values" ]]; then
        COMPREPLY=($(compgen -W "$values" -- "$cur"))
        return
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$({fn}_options "$path")" -- "$cur"))
        return
    fi
    values="$({fn}_subcommands "$path")"
    if [[ -n "$values" ]]; then
        COMPREPLY=($(compgen -W "$values" -- "$cur"))
    fi
}}
complete -o default -o bashdefault -F {fn} {prog}
"""


def _fish_text(text: str) -> str:
    return shlex.quote(" ".join(text.split())[:80])


def _fish(root: Node, prog: str) -> str:
    lines = [f"# {prog} completion for fish (made by `{prog} completion fish`)", f"complete -c {prog} -f"]
    for node in _walk(root):
        if node.path:
            seen = " && ".join(f"__fish_seen_subcommand_from {word}" for word in node.path)
        else:
            seen = "__fish_use_subcommand"
        if node.path and node.subcommands:
            seen_children = " ".join(node.subcommands)
            condition = f"{seen} && not __fish_seen_subcommand_from {seen_children}"
        elif not node.path:
            condition = seen
        else:
            condition = seen
        for name, child in node.subcommands.items():
            lines.append(f"complete -c {prog} -n {shlex.quote(condition)} -a {name} -d {_fish_text(child.help)}")
        if node.values:
            lines.append(f"complete -c {prog} -n {shlex.quote(condition)} -a {shlex.quote(' '.join(node.values))}")
        for option, text in node.options.items():
            spec = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
            extra = ""
            if option in node.choices:
                extra = f" -x -a {shlex.quote(' '.join(node.choices[option]))}"
            elif option in node.takes_value:
                extra = " -r -F"
            lines.append(f"complete -c {prog} -n {shlex.quote(seen)} {spec}{extra} -d {_fish_text(text)}")
        if node.path and not node.subcommands and not node.values:
            lines.append(f"complete -c {prog} -n {shlex.quote(seen)} -F")
    return "\n".join(lines) + "\n"
