"""The ``privbench`` command line.

``main`` turns every :class:`~privbench.errors.UserError` (bad input, unknown
plugin, unusable file) and every usage error into one line on stderr and exit
code 2, and a plugin that raised (:class:`~privbench.errors.PluginFailure`)
into one line and exit code 3, its traceback in a log file
(:mod:`privbench.failures`) and, with ``--debug``, on stderr; only bugs of
privbench itself keep their traceback. Heavy libraries (torch and friends) are
imported inside the commands that need them, so ``--help`` and ``plugins``
answer quickly.
"""

from __future__ import annotations

import os
import sys

import click

import privbench
from privbench.allocator import tune_host_allocator
from privbench.errors import PluginFailure, UserError
from privbench.errors import out_of_memory as _out_of_memory
from privbench.failures import ENV_DEBUG, set_debug
from privbench.plugins import ENV_STRICT, get_registry, truthy


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(privbench.__version__, "--version", prog_name="privbench")
@click.option(
    "--strict-plugins",
    is_flag=True,
    default=False,
    help=f"Exit 2 if any plugin fails to load or gives a warning (or set {ENV_STRICT}=1).",
)
@click.option(
    "--debug",
    is_flag=True,
    default=False,
    help=f"Print the traceback of a failed plugin to stderr too (or set {ENV_DEBUG}=1); it is always in the log file.",
)
@click.pass_context
def cli(ctx: click.Context, strict_plugins: bool, debug: bool) -> None:
    """privbench: distil image datasets and audit what a release gives away.

    \b
    Typical use:
      privbench run                                   the quickstart suite on digits
      privbench distill --data digits --method dm --ipc 10 --out rel/
      privbench audit --data digits --release rel/ --out audit/
      privbench plugins                               what is installed
    """
    strict = strict_plugins or truthy(os.environ.get(ENV_STRICT))
    set_debug(debug)
    ctx.obj = {"strict": strict, "debug": debug}
    if strict:
        get_registry(strict=True)


def _register_plugin_commands() -> None:
    """Let plugins add commands through the ``register_commands`` hook."""
    registry = get_registry(strict=False)
    hook = registry.pm.hook.register_commands
    for impl in hook.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            from privbench.plugins import PluginRecord, one_line

            registry.records.append(
                PluginRecord("command", impl.plugin_name, impl.plugin_name.split(":")[0], "", "error",
                             f"register_commands raised {one_line(exc)}")
            )


def _add_builtin_commands() -> None:
    from privbench.cli import audit_cmd, datasets_cmd, distill_cmd, plugins_cmd, report_cmd, run_cmd

    for module in (plugins_cmd, datasets_cmd, distill_cmd, audit_cmd, run_cmd, report_cmd):
        cli.add_command(module.command)
    try:
        from privbench.cli import metrics_cmd
    except ImportError:  # pragma: no cover - optional command module
        return
    cli.add_command(metrics_cmd.command)


def _fail(message: str, code: int = 2) -> None:
    line = " ".join(str(message).split())
    # File names that are not UTF-8 reach us as surrogate escapes: print them escaped, never crash on them.
    line = line.encode("utf-8", "backslashreplace").decode("utf-8")
    click.echo(f"privbench: error: {line}", err=True)
    sys.exit(code)


class Terminated(BaseException):
    """SIGTERM, raised where the process is so that every staging folder is cleaned up as on Ctrl-C.

    Not an ``Exception``, so no ``except Exception`` in a plugin swallows it.
    """


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _plugin_failed(exc: PluginFailure, argv: list[str] | None) -> None:
    """One line naming the plugin, package, job and exception, and where the traceback went; exit 3."""
    from privbench.failures import debug_enabled, failure_trace, write_command_log

    trace = failure_trace(exc)
    args = sys.argv[1:] if argv is None else argv
    where = write_command_log(getattr(exc, "log_folder", None), exc.message, trace,
                              "privbench " + " ".join(str(a) for a in args))
    if debug_enabled():
        click.echo(trace.rstrip(), err=True)
    note = f"traceback in {where}" if where is not None else "no log file could be written; rerun with --debug"
    _fail(f"{exc.message} ({note})", exc.exit_code)


def main(argv: list[str] | None = None) -> None:
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm)
    set_debug(False)
    tune_host_allocator()
    try:  # from here on, SIGTERM and Ctrl-C are one line too, even while the plugins load
        _add_builtin_commands()
        _register_plugin_commands()
        result = cli.main(args=argv, prog_name="privbench", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        _fail(exc.format_message() + hint, exc.exit_code)
    except UserError as exc:
        _fail(str(exc), exc.exit_code)
    except PluginFailure as exc:
        _plugin_failed(exc, argv)
    except Terminated:
        _fail("terminated; finished work is kept, rerun to resume", 143)
    except KeyboardInterrupt:
        _fail("interrupted; finished work is kept, rerun to resume", 130)
    except Exception as exc:
        if not _out_of_memory(exc):
            raise
        _fail(f"out of memory ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); use smaller settings "
              f"or a machine with more memory", 2)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(result if isinstance(result, int) else 0)
