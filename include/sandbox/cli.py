"""``zuora-sync-sandbox``: start one of the sandboxes in the foreground.

    zuora-sync-sandbox salesforce --host H --port P --data-dir D [--username U --password W
        --security-token T] [--accounts N --seed K] [--env-file F] [--schema FILE ...]
    zuora-sync-sandbox zuora --host H --port P --data-dir D [--client-id I --client-secret S]
        [--accounts N --seed K] [--callout-url URL --callout-secret S] [--env-file F]
    zuora-sync-sandbox mail --host H --port P --web-port W --data-dir D [--env-file F]

Exit codes: 0 after a clean stop (SIGINT/SIGTERM), 2 for bad arguments (an --env-file that cannot be
written included), a bad schema file or a data dir holding another generated tenant, 3 when the port cannot be used, 4 when the data dir cannot be used.
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
    commands = parser.add_subparsers(dest="command", required=True, metavar="{salesforce,zuora,mail}")
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
    zu = commands.add_parser(
        "zuora",
        help="a Zuora tenant over HTTP: OAuth, Data Query, ZOQL, actions, callouts",
        description="Serve a generated Zuora tenant over HTTP that Zuora's zuora-sdk and the sync use unmodified. "
        "Every change sends a callout notification. Data persists in the data dir.",
    )
    zu.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    zu.add_argument("--port", type=_port, required=True, help="port to listen on")
    zu.add_argument("--data-dir", type=Path, required=True, help="where the tenant's data and result files live")
    zu.add_argument("--client-id", help="the OAuth client id (a 36-character UUID; generated if not given)")
    zu.add_argument("--client-secret", help="the OAuth client secret (generated if not given)")
    zu.add_argument("--accounts", type=_non_negative, help="generate a tenant with this many customer accounts")
    zu.add_argument("--seed", type=int, default=1, help="the tenant's seed (default 1)")
    zu.add_argument("--callout-url", help="POST a callout notification here on every change")
    zu.add_argument("--callout-secret", help="sign callouts: HMAC-SHA256 of the body, hex, in X-Zuora-Signature")
    zu.add_argument("--env-file", type=Path, help="write AIRFLOW_CONN_ZUORA_DEFAULT here")
    zu.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    mail = commands.add_parser(
        "mail",
        help="a mail catcher: SMTP that keeps every message, and a page that shows them",
        description="Accept mail over SMTP (no TLS, no login) for any recipient, deliver none, and show the "
        "messages on a web page (and as JSON at /api/messages). Messages persist in the data dir.",
    )
    mail.add_argument("--host", default="127.0.0.1", help="address to listen on, both ports (default 127.0.0.1)")
    mail.add_argument("--port", type=_port, required=True, help="the SMTP port (e.g. 1025)")
    mail.add_argument("--web-port", type=_port, required=True, help="the port of the page with the messages (e.g. 8025)")
    mail.add_argument("--data-dir", type=Path, required=True, help="where the messages are kept")
    mail.add_argument("--env-file", type=Path, help="write AIRFLOW_CONN_SMTP_DEFAULT and MAIL_CATCHER_URL here")
    mail.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
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
        elif args.command == "zuora":
            from sandbox.zuora.server import serve as serve_zuora

            serve_zuora(
                host=args.host, port=args.port, data_dir=args.data_dir, client_id=args.client_id,
                client_secret=args.client_secret, accounts=args.accounts, seed=args.seed,
                callout_url=args.callout_url, callout_secret=args.callout_secret, env_file=args.env_file,
                log_level=args.log_level,
            )
        elif args.command == "mail":
            from sandbox.mail import serve as serve_mail

            serve_mail(host=args.host, port=args.port, web_port=args.web_port, data_dir=args.data_dir,
                       env_file=args.env_file, log_level=args.log_level)
    except StartupError as exc:
        fail(str(exc), exc.exit_code)


if __name__ == "__main__":
    main()
