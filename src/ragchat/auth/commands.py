"""`ragchat users ...`: manage logins and API keys from the command line.

    ragchat users add NAME [--admin] [--password P]
    ragchat users remove NAME | passwd NAME [--password P] | list
    ragchat users key create NAME [--label TEXT]     prints the new key on stdout, once
    ragchat users key list [NAME]
    ragchat users key revoke ID

Passwords come from ``--password``, ``RAGCHAT_PASSWORD`` or a prompt and are never printed. The
command opens only the catalog, so users and keys can be managed while the web app runs. (Its
arguments are declared in ragchat.cli, which stays cheap to import.)
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Callable, Mapping

from argon2 import PasswordHasher

from ragchat.auth.keys import create_key, list_keys, revoke_key
from ragchat.auth.users import AuthError, add_user, check_name, list_users, remove_user, set_password, user_count
from ragchat.core.errors import ConfigError
from ragchat.core.settings import Settings
from ragchat.store.catalog import Catalog


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


def users_command(settings: Settings, args, *, env: Mapping[str, str] | None = None,
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
