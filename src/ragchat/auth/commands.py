"""`ragchat users ...`: manage logins and API keys from the command line.

    ragchat users add NAME [--admin] [--password P]
    ragchat users remove NAME | passwd NAME [--password P] | list
    ragchat users key create NAME [--label TEXT]     prints the new key on stdout, once
    ragchat users key list [NAME]
    ragchat users key revoke ID

Passwords come from ``--password``, ``RAGCHAT_PASSWORD`` or a prompt and are never printed. The
command opens only the catalog, so users and keys can be managed while the web app runs.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TYPE_CHECKING, Callable, Mapping

from argon2 import PasswordHasher

from ragchat.auth.keys import create_key, list_keys, revoke_key
from ragchat.auth.users import AuthError, add_user, check_name, list_users, remove_user, set_password, user_count
from ragchat.errors import ConfigError
from ragchat.store.catalog import Catalog

if TYPE_CHECKING:  # pragma: no cover
    from ragchat.config import Settings


def add_users_parser(sub, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `users` command and its actions, on the CLI's subparsers."""
    p = sub.add_parser("users", parents=[common], help="manage logins and API keys for team mode")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, parents=[common], help=help)

    a = action("add", "add a user (the first one turns login on)")
    a.add_argument("name")
    a.add_argument("--admin", action="store_true")
    a.add_argument("--password", help="password (read from RAGCHAT_PASSWORD or asked for when omitted)")
    action("remove", "remove a user and their API keys (their documents are kept)").add_argument("name")
    action("list", "list users")
    a = action("passwd", "change a user's password (ends their sessions)")
    a.add_argument("name")
    a.add_argument("--password", help="password (read from RAGCHAT_PASSWORD or asked for when omitted)")

    keys = action("key", "API keys for the HTTP API: create, list, revoke")
    key_actions = keys.add_subparsers(dest="key_action", required=True, metavar="KEY_ACTION")
    k = key_actions.add_parser("create", parents=[common], help="make a key for a user; it is shown once")
    k.add_argument("name")
    k.add_argument("--label", default="", help="a note to recognise the key by (e.g. the tool that uses it)")
    key_actions.add_parser("list", parents=[common], help="list keys (never their secrets)").add_argument("name", nargs="?")
    key_actions.add_parser("revoke", parents=[common], help="delete a key by its id").add_argument("key_id", metavar="ID")
    return p


def read_password(args, env: Mapping[str, str], prompt: Callable[[str], str] | None, stdin_tty: bool) -> str:
    if getattr(args, "password", None):
        print("ragchat: note: a password given on the command line can be seen by other users of this machine "
              "(ps, shell history); prefer RAGCHAT_PASSWORD or the prompt", file=sys.stderr)
        return args.password
    if env.get("RAGCHAT_PASSWORD"):
        return env["RAGCHAT_PASSWORD"]
    if prompt is None:
        if not stdin_tty:
            raise ConfigError("no password given: pass --password, set RAGCHAT_PASSWORD, or run the command in a terminal")
        prompt = getpass.getpass
    first = prompt(f"password for {args.name}: ")
    second = prompt("again: ")
    if first != second:
        raise AuthError("the two passwords differ; nothing was changed")
    return first


def users_command(settings: "Settings", args, *, env: Mapping[str, str] | None = None,
                  prompt: Callable[[str], str] | None = None, hasher: PasswordHasher | None = None) -> int:
    """`ragchat users add|remove|list|passwd|key ...` (see the module docstring).

    Adding the first user turns login on at the app's next start."""
    env = os.environ if env is None else env
    settings.store.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings.catalog_sqlalchemy_url)
    try:
        action = args.action
        if action == "list":
            users = list_users(catalog)
            if not users:
                print("no users: the web app runs without login (loopback only). Add one with "
                      "`ragchat users add NAME --admin`")
            for u in users:
                print(f"{u.name:<32} {'admin' if u.is_admin else 'user':<6} added {u.created_at:%Y-%m-%d}")
            return 0
        if action == "key":
            return _key_command(catalog, args)
        if not getattr(args, "name", None):
            raise ConfigError(f"`ragchat users {action}` needs a user name")
        name = check_name(args.name)
        if action == "remove":
            remove_user(catalog, name)
            print(f"removed user {name} and their API keys; their private documents (~{name}/...) are kept")
            return 0
        if action == "passwd":
            if name not in {u.name for u in list_users(catalog)}:
                raise AuthError(f"no user {name}: see `ragchat users list`")
            set_password(catalog, name, read_password(args, env, prompt, sys.stdin.isatty()), hasher)
            print(f"password changed for {name}; their open sessions have ended")
            return 0
        if action == "add":
            first = user_count(catalog) == 0
            if name in {u.name for u in list_users(catalog)}:
                raise AuthError(f"user {name} already exists: change the password with `ragchat users passwd {name}`")
            add_user(catalog, name, read_password(args, env, prompt, sys.stdin.isatty()), getattr(args, "admin", False),
                     hasher)
            print(f"added {'admin' if getattr(args, 'admin', False) else 'user'} {name}")
            if first:
                print("login is now required: restart the web app if it is running")
            return 0
        raise ConfigError(f"unknown users action {action!r}: use add, remove, list, passwd or key")
    finally:
        catalog.close()


def _key_command(catalog: Catalog, args) -> int:
    sub = getattr(args, "key_action", None)
    if sub == "create":
        info, key = create_key(catalog, check_name(args.name), getattr(args, "label", ""))
        # The key alone on stdout (KEY=$(ragchat users key create alice) works); the rest on stderr.
        print(key, flush=True)
        print(f"ragchat: API key {info.id} for {info.user}. It is shown only this once: store it now. Send it as "
              f"'Authorization: Bearer <key>'; revoke it with `ragchat users key revoke {info.id}`", file=sys.stderr)
        return 0
    if sub == "list":
        name = getattr(args, "name", None)
        keys = list_keys(catalog, check_name(name) if name else None)
        if not keys:
            print("no API keys: make one with `ragchat users key create NAME`")
        for k in keys:
            used = f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never"
            print(f"{k.id}  {k.user:<32} created {k.created_at:%Y-%m-%d}  last used {used:<16}  {k.label}".rstrip())
        return 0
    if sub == "revoke":
        info = revoke_key(catalog, args.key_id)
        print(f"revoked API key {info.id} of {info.user}")
        return 0
    raise ConfigError("use `ragchat users key create NAME`, `key list [NAME]` or `key revoke ID`")
