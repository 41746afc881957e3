"""``trustfm verify``: is the report's provenance intact, and do the files still match it?"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich, table


@app.command()
def verify(
    report: Path = typer.Argument(..., help="report.json or report.html"),
    public_key: Optional[Path] = typer.Option(None, "--public-key", help="the signer's public key (PEM) to trust"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Check the signature over every number and the page, and re-hash model, data and result files.

    Exit 0: intact; 4: tampered or missing. Outside its run folder the report's own checks run and the
    file checks are listed as not done.
    """
    from trustfm.cli.gate import EXIT_CHECK_FAILED
    from trustfm.report.provenance import verify_report

    result = verify_report(report, public_key=public_key)
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
    else:
        changed = any("report.html was changed" in p for p in result.problems)
        page = ("page as signed" if result.html_checked else
                "page CHANGED since signing" if changed else "page not checked")
        rows = table(f"verify {report}: signature {'valid' if result.signature_valid else 'INVALID'}; {page}",
                     ["role", "file", "status"])
        for f in result.files:
            style = "green" if f.status == "ok" else "bold red"
            rows.add_row(f.role, f.path, f"[{style}]{f.status}[/]")
        print_rich(rows)
        for problem in result.problems:
            typer.echo(f"problem: {problem}", err=True)
        for skipped in result.not_checked:
            typer.echo(f"not checked: {skipped}", err=True)
        typer.echo("VERIFIED" if result.passed else "FAILED")
    if not result.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command()
def keygen(
    output_dir: Path = typer.Option(Path.home() / ".trustfm", "--output-dir", "-o", help="where to write the key pair"),
    encryption: Optional[Path] = typer.Option(None, "--encryption",
                                              help="instead: write a new AES-256 encryption key file here"),
) -> None:
    """Create an Ed25519 key pair for signing reports (set TRUSTFM_SIGNING_KEY to the private key),
    or with --encryption PATH a key for encrypted artefacts."""
    if encryption is not None:
        from trustfm.encryption import new_key_file

        typer.echo(f"encryption key: {new_key_file(encryption)}  (export TRUSTFM_ENCRYPTION_KEY_FILE={encryption})")
        return
    from trustfm.report.provenance import generate_keypair

    private, public = generate_keypair(output_dir)
    typer.echo(f"private key: {private}  (keep it secret; export TRUSTFM_SIGNING_KEY={private})")
    typer.echo(f"public key:  {public}  (give it to whoever verifies your reports)")
