"""`proxyos-worker alerts`: the workers' alert rules in ProxyOS's alert_rules, and a test
of each notification channel."""

from __future__ import annotations

import argparse
import json

from tasks.alerts.manage import add_rule, list_rules, set_enabled, test_channel
from tasks.alerts.rules import TYPES

from ..settings import alerts as alert_settings
from .common import add_command, format_time, print_json, print_table, with_database


def register(commands) -> None:
    parser = add_command(
        commands,
        "alerts",
        help="list, add, enable and disable the workers' alert rules; test a channel",
        description="The workers' alert rules live in ProxyOS's alert_rules table beside the "
        "dashboard's own (which the workers leave alone): " + ", ".join(TYPES) + ". Their config is "
        "a JSON object in ProxyOS's AlertRuleConfig style (cooldownMinutes, groupSeconds, holdMinutes, "
        "recovery, failures, thresholdsDays); see docs/alerts.md. Notifications go to the webhook "
        "(system_settings alert_webhook) and e-mail (alert_smtp) the dashboard configures.",
        example="proxyos-worker alerts list\n"
        "proxyos-worker alerts add route_unhealthy 'Route down' --config '{\"holdMinutes\": 2}'\n"
        "proxyos-worker alerts disable RULE_ID\n"
        "proxyos-worker alerts test webhook",
    )
    sub = parser.add_subparsers(dest="alerts_command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str, example: str):
        return sub.add_parser(name, help=help, description=description, epilog="example:\n  " + example,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    listing = command("list", "every rule of the workers' types, its config or its problem",
                      "List the workers' alert rules, enabled or not: the config with its defaults filled "
                      "in, or the problem that makes the evaluator skip the rule.",
                      "proxyos-worker alerts list --json | jq '.[] | select(.problem)'")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(handler=handle_list)
    add = command("add", "add an enabled rule",
                  "Add an enabled rule. A bad config, an unknown type or a route that does not exist is "
                  "refused with one line and nothing is written.",
                  "proxyos-worker alerts add cert_expiring_each 'Expiry' --config '{\"thresholdsDays\": [14, 3]}'")
    add.add_argument("type", choices=sorted(TYPES), help="the rule's type")
    add.add_argument("name", help="the rule's name, shown in the dashboard and in every message")
    add.add_argument("--config", default="{}", metavar="JSON", help="the rule's config (default: {}, every default)")
    add.add_argument("--route", metavar="ID", help="route_unhealthy only: this route instead of every route")
    add.add_argument("--json", action="store_true", help="print the new rule as JSON")
    add.set_defaults(handler=handle_add)
    for verb, enabled in (("enable", True), ("disable", False)):
        toggle = command(verb, f"{verb} a rule by id",
                         f"{verb.capitalize()} one of the workers' rules (the dashboard's own rules are "
                         "the dashboard's to change).", f"proxyos-worker alerts {verb} RULE_ID")
        toggle.add_argument("rule_id", metavar="RULE_ID")
        toggle.set_defaults(handler=handle_toggle, enabled=enabled)
    test = command("test", "send a test notification through a channel now (not through the outbox)",
                   "Send one message (event alert.test) through the webhook (system_settings alert_webhook) "
                   "or e-mail (alert_smtp) channel now, and say what the webhook answered or where the mail "
                   "went; a channel that is not set or not usable is named.",
                   "proxyos-worker alerts test smtp")
    test.add_argument("channel", choices=["webhook", "smtp"])
    test.set_defaults(handler=handle_test)


def handle_list(args, settings) -> int:
    items = with_database(settings, list_rules)
    if args.json:
        print_json(items)
        return 0
    if not items:
        print("no alert rules of the workers' types (add one: proxyos-worker alerts add --help)")
        return 0
    print_table(
        ["ID", "NAME", "TYPE", "ENABLED", "ROUTE", "LAST FIRED", "CONFIG OR PROBLEM"],
        [[i["id"], i["name"], i["type"], "yes" if i["enabled"] else "no", i["route"],
          format_time(i["last_fired_at"]) if i["last_fired_at"] else "-",
          i["problem"] or json.dumps(i["config"], separators=(",", ":"))] for i in items],
    )
    return 0


def handle_add(args, settings) -> int:
    rule = with_database(settings, lambda engine: add_rule(engine, args.type, args.name, args.config, args.route))
    if args.json:
        print_json(rule)
    else:
        print(f"added {rule['type']} rule {rule['name']!r}: {rule['id']}")
    return 0


def handle_toggle(args, settings) -> int:
    with_database(settings, lambda engine: set_enabled(engine, args.rule_id, args.enabled))
    print(f"{'enabled' if args.enabled else 'disabled'} {args.rule_id}")
    return 0


def handle_test(args, settings) -> int:
    channel_settings = settings.area(alert_settings.load)
    print(with_database(settings, lambda engine: test_channel(engine, args.channel, channel_settings)))
    return 0
