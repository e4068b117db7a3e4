"""``zuora-sync-sandbox``: start one of the sandboxes in the foreground.

    zuora-sync-sandbox salesforce --host H --port P --data-dir D [--username U --password W
        --security-token T] [--accounts N --seed K] [--env-file F] [--schema FILE ...]

Exit codes: 0 after a clean stop (SIGINT/SIGTERM), 2 for bad arguments (an --env-file that cannot be
written included) or a bad schema file, 3 when the port cannot be used, 4 when the data dir cannot be used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sandbox.serving import StartupError, fail


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 1 and 65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zuora-sync-sandbox",
        description="Local sandboxes that speak Salesforce's and Zuora's wire protocols.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{salesforce}")
    sf = commands.add_parser(
        "salesforce",
        help="a Salesforce org over HTTPS: SOAP/OAuth login, REST, Bulk API 2.0 and 1.0",
        description="Serve a Salesforce org over HTTPS that simple-salesforce and Airflow's Salesforce provider "
        "use unmodified. Data persists in the data dir.",
    )
    sf.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sf.add_argument("--port", type=_port, required=True, help="port to listen on")
    sf.add_argument("--data-dir", type=Path, required=True, help="where the org's data, TLS files and jobs live")
    sf.add_argument("--username", help="login user (generated and kept in the data dir if not given)")
    sf.add_argument("--password", help="login password (generated and kept in the data dir if not given)")
    sf.add_argument("--security-token", help="security token appended to the password at login")
    sf.add_argument("--accounts", type=_non_negative, help="pre-create the standard Accounts of a Zuora tenant of this size")
    sf.add_argument("--seed", type=int, default=1, help="the tenant's seed (default 1)")
    sf.add_argument("--env-file", type=Path, help="write REQUESTS_CA_BUNDLE and AIRFLOW_CONN_SALESFORCE_DEFAULT here")
    sf.add_argument("--schema", type=Path, action="append", default=[],
                    help="extra schema file (YAML) adding objects or fields; may repeat")
    sf.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "salesforce":
            from sandbox.salesforce.server import serve

            serve(
                host=args.host, port=args.port, data_dir=args.data_dir, username=args.username,
                password=args.password, security_token=args.security_token, accounts=args.accounts,
                seed=args.seed, env_file=args.env_file, schema_files=args.schema, log_level=args.log_level,
            )
    except StartupError as exc:
        fail(str(exc), exc.exit_code)


if __name__ == "__main__":
    main()
