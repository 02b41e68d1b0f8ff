"""Commands whose arguments are ids that may begin with "-".

Key ids are RFC 7638 thumbprints and grant ids random URL-safe text, so one in 64 begins with "-"
(client ids stopped doing so, but older ones may). Click would read such an id as an option
("No such option '-P'"), so an operator could not paste what `keys list` printed. These commands
read every argument that is not one of their own options and is as long as an id as an argument.
"""

from __future__ import annotations

import click

# Ids are at least 24 characters; anything shorter that begins with "-" is a mistyped option and
# gets Click's own "No such option" message.
_SHORTEST_ID = 16


class IdArguments(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value: dict[str, bool] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    takes_value[name] = not (param.is_flag or param.count)
        options: list[str] = []
        positional: list[str] = []
        index = 0
        while index < len(args):
            arg = args[index]
            index += 1
            if arg == "--":
                positional.extend(args[index:])
                break
            name = arg.split("=", 1)[0]
            if name in takes_value:
                options.append(arg)
                if takes_value[name] and "=" not in arg and index < len(args):
                    options.append(args[index])  # the option's value, whatever it begins with
                    index += 1
            elif arg.startswith("-") and len(arg) < _SHORTEST_ID:
                options.append(arg)
            else:
                positional.append(arg)
        return super().parse_args(ctx, [*options, "--", *positional])
