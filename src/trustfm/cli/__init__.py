"""The ``trustfm`` command line: one module per command, each a thin wrapper.

Exit codes: 0 ok, 1 internal error, 2 usage or config error, 3 data error, 4 a gate or
verification failed, 5 an output could not be written (disk full, read-only folder).
User errors print one clear message and no traceback; so does an unexpected error
(its type, where it happened, and its message with quoted values masked), unless
``--debug`` or ``TRUSTFM_DEBUG=1`` asks for the traceback.
"""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="trustfm",
    help="Fine-tune a pretrained foundation model on your data, then audit its risks. "
    "Add --debug to any command to see the traceback of an unexpected error.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # help texts name config keys in brackets ("[data.train]"): not Rich markup
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Inspect and validate datasets.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")
audit_app = typer.Typer(help="Audit a trained run's risks.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(audit_app, name="audit")
ledger_app = typer.Typer(help="The privacy ledger: epsilon spent per dataset.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(ledger_app, name="ledger")


def _register() -> None:
    # importing a command module registers its command on ``app`` / ``data_app``
    from trustfm.cli import (  # noqa: F401
        adjust, audit_all, audit_attacks, audit_canaries, audit_compare, audit_extraction, audit_ensemble, audit_fairness, audit_images, audit_membership, audit_ood, audit_output_rules,
        audit_robustness, compress, data_check, data_images, federate, monitor, serve, data_pii, demo, evaluate, explain, gate, import_model, ledger, predict, report, retrain, train, tune, verify,
    )


def describe_unexpected(exc: BaseException) -> str:
    """``Type at module:line: message`` with anything quoted and every long number masked.

    Library messages often quote the value they choked on (a text, a name), and
    that value may be personal data; the type and the place are enough to file a bug.
    """
    import re
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "trustfm" in f.filename]
    where = ""
    if frames:
        last = frames[-1]
        module = last.filename.split("trustfm", 1)[-1].strip("/\\").removesuffix(".py").replace("/", ".")
        where = f" at trustfm.{module}:{last.lineno}"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = re.sub(r"(['\"`])(?:(?!\1).)*\1", r"\1…\1", message)  # quoted values
    message = re.sub(r"\d{4,}", "…", message)[:200]  # long numbers: phones, cards, ids
    return f"{type(exc).__name__}{where}" + (f": {message}" if message else "")


def _usage_errors() -> tuple[type[BaseException], ...]:
    """What Typer raises for a usage error: ``typer.TyperException`` in recent Typer, click's ``ClickException`` in
    the Typer that Flower pins (< 0.21), which builds on click."""
    errors = [getattr(typer, "TyperException", None)]
    try:
        import click

        errors.append(click.ClickException)
    except ImportError:
        pass
    return tuple(e for e in errors if e is not None)


def _plain_option_help() -> None:
    """Typer escapes the brackets of ``[default: ...]`` and ``[required]`` for Rich even when Rich markup is off
    (``rich_markup_mode=None``, as here), and the plain help then shows ``\\[required]``: keep them plain."""
    try:
        from typer import rich_utils
    except ImportError:  # no Rich: nothing is escaped
        return
    rich_utils.escape_before_html_export = lambda text: text.strip()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns (and, from the console script, exits with) the exit code."""
    from rich.markup import escape

    from trustfm.errors import TrustfmError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _register()
    _plain_option_help()
    from trustfm.cli._output import configure_logging, error_console

    collapser = configure_logging()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("TRUSTFM_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    if args[:1] == ["audit"] and "--all" in args:
        # `trustfm audit RUN_DIR --all` is the documented spelling of `trustfm audit all RUN_DIR`
        args = ["audit", "all", *[a for a in args[1:] if a != "--all"]]
    try:
        result = app(args=args, standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except TrustfmError as exc:
        error_console().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        error_console().print("aborted")
        code = 1
    except _usage_errors() as exc:
        # usage errors (unknown flag, bad value): click's own message, exit code 2
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            error_console().print(f"error: {escape(str(exc))}", soft_wrap=True)
        code = getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        error_console().print("interrupted")
        code = 130
    except Exception as exc:  # the last resort: one line, never a traceback (unless asked for)
        if debug:
            raise
        error_console().print(f"internal error: {escape(describe_unexpected(exc))}", highlight=False, soft_wrap=True)
        error_console().print("This is a bug in trustfm. Rerun with --debug (or TRUSTFM_DEBUG=1) for the traceback.",
                              highlight=False, soft_wrap=True)
        code = 1
    for line in collapser.summary():
        error_console().print(line, highlight=False, soft_wrap=True)
    if argv is None:
        sys.exit(code)
    return code
