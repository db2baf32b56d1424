"""The login throttle's counts in the catalog (``login_failures``), so that every server sharing the
catalog allows the same few wrong passwords in all, not each of them as many
(ragchat.auth.sessions.LoginThrottle decides; this module keeps the rows).

An attempt is recorded before its password is checked and counted as a failure until it succeeds
(``reserve_login``, then ``release_login``): attempts sent in parallel, to one server or to several,
cannot all pass one check that none of them has yet counted in. Rows older than the window are
deleted as new attempts come.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Sequence

from sqlalchemy import delete, func, select

from ragchat.store.tables import LoginFailure, now


class LoginFailures:
    """Mixin of ``Catalog``: the login throttle's rows."""

    def reserve_login(self, keys: Sequence[str], limit: int, window_s: float) -> list[int] | None:
        """Record an attempt under each key; its row ids, or None (nothing recorded) when a key
        already had `limit` attempts that were not released in the last `window_s` seconds. Of
        attempts racing for the last place, the one that commits last sees the others: at most
        `limit` pass, and perhaps fewer, never more."""
        keys = list(dict.fromkeys(keys))
        since = now() - timedelta(seconds=window_s)
        with self.session() as s, s.begin():
            s.execute(delete(LoginFailure).where(LoginFailure.at < since))
            rows = [LoginFailure(key=k, at=now()) for k in keys]
            s.add_all(rows)
            s.flush()
            ids = [r.id for r in rows]
        with self.session() as s:
            counts = s.execute(select(LoginFailure.key, func.count()).where(
                LoginFailure.key.in_(keys), LoginFailure.at >= since).group_by(LoginFailure.key)).all()
        if any(n > limit for _, n in counts):
            self.release_login(ids)
            return None
        return ids

    def release_login(self, ids: Sequence[int], key: str | None = None) -> None:
        """Forget the attempt's rows (it succeeded, or was refused uncounted), and with `key` every
        failure recorded under that key (a user who logged in starts afresh)."""
        with self.session() as s, s.begin():
            s.execute(delete(LoginFailure).where(LoginFailure.id.in_(list(ids))))
            if key is not None:
                s.execute(delete(LoginFailure).where(LoginFailure.key == key))
