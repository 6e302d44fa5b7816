"""`patchreg demo`: the whole story on a tiny model family, from nothing, in the configured home.

Build a tiny Llama family locally (v1 pretrained on the pydoc topic texts that ship with Python,
v2 = v1 trained further), create a domain with train, eval and general data, register v1, train one
patch per method through the worker, register v2 and let the worker port, evaluate, gate and
retrain by itself; then print the compatibility matrix, the evaluations and one lineage tree.

Every step is idempotent (registrations are skipped when present, training jobs carry dedupe
keys), so running the demo again in the same home resumes an interrupted run, or shows a
finished one again. A registry that holds anything else is refused: the demo wants its own.
"""

from __future__ import annotations

import time

import click

from cli.context import AppContext, pass_app
from cli.demo import report, setup
from cli.demo.plan import DOMAIN, FAMILY, FULL, QUICK, V1, V2, Plan
from cli.demo.setup import command, note, step
from cli.demo.watch import Reporter, failed_jobs, run_worker
from core.errors import InvalidState

UI_URL = "http://127.0.0.1:8000/families/tiny/matrix"  # `patchreg serve`'s default address


@click.command()
@click.option("--quick", is_flag=True, help="A smaller family, less data, fewer steps: about 20 s.")
@pass_app
def demo(app: AppContext, quick: bool) -> None:
    """Train patches on a tiny model, release a new base version, and watch them port.

    Runs in the configured home (--home, $PATCHREG_HOME) and database (--db), which must be empty
    or hold an earlier run of the demo: that run is resumed, or shown again when it finished.
    About a minute and a half on 2 CPU cores; --quick takes about 20 s.
    """
    import torch

    if app.json_output:
        raise click.UsageError("the demo prints for people; it has no --json output")
    plan = QUICK if quick else FULL
    threads = torch.get_num_threads()
    if not torch.cuda.is_available():
        # Measured on 2 shared cores: the tiny model's ops are too small to split, and two
        # threads spin against each other (and other load) up to 10x slower than one.
        torch.set_num_threads(1)
    try:
        _run(app, plan)
    finally:
        torch.set_num_threads(threads)


def _run(app: AppContext, plan: Plan) -> None:
    from registry import migrate

    started = time.perf_counter()
    home = app.settings.home.expanduser().resolve()
    models = plan.models_dir(home)
    where = app.settings.resolved_database_url.split("@")[-1]  # never print a password
    click.echo(f"patchreg demo{' --quick' if plan.name == 'quick' else ''} in {home} (database {where})")
    click.echo("Each step shows the command that does the same by hand.")

    step("patchreg db upgrade")
    if migrate.current_revision(app.engine) is None:
        migrate.upgrade(app.engine)
        note("created the registry's tables")
    else:  # an existing registry: never migrated behind its owner's back
        app.ensure_schema()
        note("the registry is at the current schema")
    setup.check_registry(app, plan, models)

    family = setup.build_models(plan, models)
    setup.register(app, V1, family.v1)
    setup.add_domain(app, plan, home / "demo-data" / plan.name)
    setup.queue_trainings(app, plan)

    reporter = Reporter(app)
    step("patchreg worker --until-idle   # trains each patch, then evaluates and gates it on v1")
    ran = _work(app, reporter)

    setup.register(app, V2, family.v2, parent=V1)
    step("patchreg worker --until-idle   # ports every patch onto v2, evaluates, gates, retrains")
    ran += _work(app, reporter)

    ctx = click.get_current_context()
    from cli import compat, lineage

    step(f"patchreg compat matrix {FAMILY}")
    ctx.invoke(compat.matrix, family=FAMILY, domain=None)

    stories = report.gather(app)
    step(f"the evaluations the worker recorded (`patchreg port PATCH --base {V2}` shows one patch's)")
    report.print_evaluations(stories, plan.n_eval)

    focus = next((st.retrained for st in stories if st.retrained), None) or next(
        (st.ported for st in stories if st.ported), None
    )
    if focus is not None:
        step(f"patchreg lineage {focus.id}")
        ctx.invoke(lineage.lineage, patch_id=focus.id)

    click.echo()
    seconds = time.perf_counter() - started
    click.echo(click.style(report.summary(stories, seconds, reran=ran == 0), bold=True))
    click.echo("Next:")
    hints = [
        (
            command(app, "fetch", DOMAIN, "--base", V2, "--format", "peft", "-o", "adapter"),
            "the best validated patch for v2, as a PEFT adapter",
        ),
        (
            command(app, "base", "register", f"{FAMILY}:v3", str(family.v3), "--parent", V2),
            "a wider release",
        ),
        (
            command(app, "worker", "--until-idle"),
            "nothing ports onto v3: the worker says why, and retrains",
        ),
    ]
    for line, why in hints:
        click.echo(f"  {line}\n      {why}")
    click.echo("See the release story in a browser:")
    for line, why in (
        (command(app, "token", "create", "me", "--scopes", "read,write"), "a token to log in with"),
        (command(app, "serve"), f"then open {UI_URL} and paste the token"),
    ):
        click.echo(f"  {line}\n      {why}")


def _work(app: AppContext, reporter: Reporter) -> int:
    """Run the queue dry; how many jobs ran. Refuses to go on past a failed job."""
    ran = run_worker(app, reporter)
    if ran == 0:
        note("nothing left to do: every job had already run")
    failed = failed_jobs(app)
    if failed:
        listed = ", ".join(f"{j.id} ({j.kind})" for j in failed[:5])
        raise InvalidState(
            f"{len(failed)} job{'s' if len(failed) != 1 else ''} failed: {listed}; "
            f"see `{command(app, 'jobs', 'list', '--status', 'failed')}`, and queue one again with "
            f"`{command(app, 'jobs', 'retry', 'JOB')}` before running the demo again"
        )
    return ran
