"""`modelsync run`: the operator. Its options are made from the settings: one per field
of OperatorSettings that has a Flag (runtime/settings.py), in the fields' order, so a new
setting is a new flag with no second edit; only how the process logs is set here."""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Callable
from typing import Any

import click

from modelsync.cli.common import Cluster, pass_cluster
from modelsync.runtime.settings import Flag, OperatorSettings
from modelsync.telemetry import logs

# The log flags are listed where they always were: before --leader-elect.
LOG_OPTIONS_BEFORE = "leader_election"
LOG_OPTIONS = (
    click.option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
        default="INFO",
        show_default=True,
    ),
    click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="json: one JSON object per line, for log collectors",
    ),
)
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _parsing(flag: Flag, hint: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """click's callback reading a value as the setting: a ValueError refuses the flag."""
    parse = flag.parse
    assert parse is not None

    def callback(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        try:
            return parse(value)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint=hint) from None

    return callback


def _type(kind: Any, flag: Flag) -> Any:
    if flag.choices:
        return click.Choice(flag.choices)
    if kind is int:
        return click.IntRange(min=int(flag.min)) if flag.min is not None else int
    if kind is float:
        return click.FloatRange(min=flag.min) if flag.min is not None else float
    return str


def setting_option(setting: dataclasses.Field[Any], kind: Any, flag: Flag) -> Decorator:
    """The option of one setting: named --<field-name> unless its Flag names it; a bool an
    on/off flag, a tuple or dict repeatable (unless comma-separated), else one value of the
    field's type; the default the field's, shown unless it is empty."""
    names = flag.names or (f"--{setting.name.replace('_', '-')}",)
    default = setting.default
    if default is dataclasses.MISSING:
        assert setting.default_factory is not dataclasses.MISSING
        default = setting.default_factory()
    how: dict[str, Any] = {"help": flag.help, "metavar": flag.metavar, "envvar": flag.envvar}
    if flag.parse is not None:
        how["callback"] = _parsing(flag, names[-1])
    origin = typing.get_origin(kind)
    if kind is bool:
        how.update(is_flag=True, default=default)
    elif origin in (tuple, dict) and not flag.comma_separated:
        how.update(multiple=True)
    else:
        shown = ",".join(default) if flag.comma_separated else default
        how["default"] = shown
        if shown not in (None, ""):
            how["show_default"] = True
        if not flag.comma_separated:
            how["type"] = _type(kind, flag)
    return click.option(*names, setting.name, **how)


def setting_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `run`: every flagged setting, and the log flags."""
    kinds = typing.get_type_hints(OperatorSettings)
    options: list[Decorator] = []
    for setting in dataclasses.fields(OperatorSettings):
        if setting.name == LOG_OPTIONS_BEFORE:
            options += LOG_OPTIONS
        if (flag := setting.metadata.get("flag")) is not None:
            options.append(setting_option(setting, kinds[setting.name], flag))
    for option in reversed(options):  # click lists options in the decorators' order
        function = option(function)
    return function


@click.command(
    epilog="Examples:\n\n\b\n  modelsync run\n  modelsync run -n team-a -n team-b --workers 8"
)
@setting_options
@pass_cluster
def run(cluster: Cluster, /, log_level: str, log_format: str, **values: Any) -> None:
    """Run the operator: serve every ModelDeployment and sync every ModelSync it sees."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        logs.JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=log_level, handlers=[handler])
    if log_level != "DEBUG":
        # kopf logs every handled watch event at INFO; ours say what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # The global --kubeconfig stands in for run's own; a shard always elects a leader.
    values["kubeconfig"] = values["kubeconfig"] or cluster.kubeconfig
    values["leader_election"] = values["leader_election"] or bool(values["shard"])
    settings = OperatorSettings(**values)
    from modelsync.runtime import operator  # kopf loads only for `run`

    try:
        kept_the_lead = operator.run(settings)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    if not kept_the_lead:
        raise SystemExit(1)  # restarted, it waits for the lead like any other replica
