"""The web app's evaluation runs (``eval_runs``): who started them, on which QA set and set-ups, how
far they are and what they found. A user reads their own runs, an admin (``owner=ALL``) the team's."""

from __future__ import annotations

from sqlalchemy import select

from ragchat.store.feedback import ALL
from ragchat.store.tables import EvalRunRow

FIELDS = {"status", "done", "total", "results", "error", "finished_at"}


class Evaluations:
    """Mixin of ``Catalog``: evaluation runs."""

    def add_eval_run(self, *, run_id: str, owner: str | None, set_name: str, setups: list, total: int) -> None:
        with self.session() as s, s.begin():
            s.add(EvalRunRow(id=run_id, owner=owner, set_name=set_name[:256], setups=setups, status="queued",
                             done=0, total=total, results=[]))

    def update_eval_run(self, run_id: str, **fields) -> None:
        """Set some of status, done, total, results, error and finished_at."""
        if not set(fields) <= FIELDS:
            raise ValueError(f"unknown fields {set(fields) - FIELDS}")
        with self.session() as s, s.begin():
            row = s.get(EvalRunRow, run_id)
            if row is not None:
                for name, value in fields.items():
                    setattr(row, name, value)

    def eval_run(self, run_id: str) -> EvalRunRow | None:
        with self.session() as s:
            return s.get(EvalRunRow, run_id)

    def eval_runs(self, owner=ALL, status: tuple[str, ...] | None = None, limit: int = 100) -> list[EvalRunRow]:
        """Newest first: the user's own runs, or with ALL everyone's; ``status``: only runs in one of these."""
        q = select(EvalRunRow).order_by(EvalRunRow.created_at.desc(), EvalRunRow.id).limit(limit)
        if owner is not ALL:
            q = q.where(EvalRunRow.owner.is_(None) if owner is None else EvalRunRow.owner == owner)
        if status is not None:
            q = q.where(EvalRunRow.status.in_(status))
        with self.session() as s:
            return list(s.scalars(q))
