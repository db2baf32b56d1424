"""`ragchat ...`: the command line over the same engine as the web app.

Exit codes: 0 success, 1 when a file failed or the engine reported an error, 2 on a usage or
configuration error. Every error is one line for people, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ragchat.core.settings import Settings, load_settings
from ragchat.core.errors import ConfigError, RagchatError


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # Accepted before or after the command; SUPPRESS keeps a later default from hiding an earlier value.
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                        help="TOML config file (default: ./config.toml when present)")
    common.add_argument("--store", type=Path, default=argparse.SUPPRESS,
                        help="store directory (default: docs_store, or RAGCHAT_STORE)")
    p = argparse.ArgumentParser(prog="ragchat", parents=[common],
                                description="Chat with your own documents, on your own machine.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    _add_document_commands(add)
    _add_answer_commands(add)
    _add_users_command(add("users", help="manage logins and API keys for team mode (ragchat.auth.commands)"), common)
    f = add("feedback", help="the thumbs up/down people gave answers").add_subparsers(dest="action", required=True,
                                                                                       metavar="ACTION")
    e = f.add_parser("export", parents=[common],
                     help="write rated answers as a BEIR folder for `ragchat eval DIR --answers`")
    e.add_argument("out", type=Path, metavar="DIR")
    who = e.add_mutually_exclusive_group()
    who.add_argument("--user", help="this user's feedback, with the documents they may read (team mode)")
    who.add_argument("--all", action="store_true", help="everyone's feedback, with every document it cites")
    return p


def _add_document_commands(add) -> None:
    """ingest, watch, worker, llm-server, docs, remove, reindex."""
    s = add("ingest", help="add files or folders (walked recursively)")
    s.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    s.add_argument("--collection", help="collection to add to (default: settings.collection)")
    s.add_argument("--password", help="password for encrypted PDFs")

    s = add("watch", help="keep a collection in step with a folder until stopped (Ctrl+C)")
    s.add_argument("folder", type=Path, metavar="DIR")
    s.add_argument("--collection", help="collection that mirrors the folder (default: the folder's name)")
    s.add_argument("--polling", action="store_true", default=None,
                   help="poll the folder instead of using change notifications (network folders)")

    add("worker", help="shared mode: take ingestion jobs from the catalog's queue until stopped (no web server)")

    s = add("llm-server", help="serve the built-in model as an OpenAI-compatible server for other machines or processes")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--api-key", default=None, help="key the clients must send (default: RAGCHAT_LLM_SERVER_KEY, else none)")

    s = add("docs", help="list documents")
    s.add_argument("--json", action="store_true")

    s = add("remove", help="remove documents by source name")
    s.add_argument("sources", nargs="+", metavar="SOURCE")
    s.add_argument("--collection", help="only in this collection")

    add("reindex", help="rebuild the indexes with the configured embedding model")


def _add_answer_commands(add) -> None:
    """ask, serve, eval."""
    s = add("ask", help="ask a question; prints the streamed answer, then the sources")
    s.add_argument("question")
    s.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    s.add_argument("--collection", action="append", help="limit to this collection (repeatable)")

    s = add("serve", help="start the web app (the same as python app.py)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--insecure-no-auth", action="store_true", default=None,
                   help="allow a non-loopback bind without login (trusted networks only)")

    s = add("eval", help="measure retrieval (or, with --answers, the answers) on a BEIR-format data set")
    s.add_argument("beir_dir", type=Path, metavar="BEIR_DIR")
    s.add_argument("--split", default="test")
    s.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default=None)
    s.add_argument("--json", action="store_true", help="print one JSON line with every figure last")
    s.add_argument("--limit", type=int,
                   help="only N queries: the first N, or with --answers N drawn with a fixed seed (for quick checks)")
    s.add_argument("--answers", action="store_true",
                   help="ask every question through chat and score the replies (needs answers in the queries' metadata)")
    s.add_argument("--details", type=Path, metavar="FILE", help="with --answers: write one JSON line per question here")
    s.add_argument("--conversation", action="store_true",
                   help="with --answers: ask every question in one chat (shuffled with a fixed seed), not one chat each")
    s.add_argument("--files", type=Path, metavar="DIR",
                   help="with --answers: the set's corpus is the files its questions name (metadata.file), read from DIR")


def _add_users_command(s: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """users add|remove|list|passwd, users key create|list|revoke."""
    users = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    u = users.add_parser("add", parents=[common], help="add a user (the first one turns login on)")
    u.add_argument("name")
    u.add_argument("--admin", action="store_true")
    u.add_argument("--password", help="password (read from RAGCHAT_PASSWORD or asked for when omitted)")
    u = users.add_parser("remove", parents=[common], help="remove a user and their API keys (documents are kept)")
    u.add_argument("name")
    users.add_parser("list", parents=[common], help="list users")
    u = users.add_parser("passwd", parents=[common], help="change a user's password (ends their sessions)")
    u.add_argument("name")
    u.add_argument("--password", help="password (read from RAGCHAT_PASSWORD or asked for when omitted)")
    keys = users.add_parser("key", parents=[common], help="API keys for the HTTP API: create, list, revoke")
    keys = keys.add_subparsers(dest="key_action", required=True, metavar="KEY_ACTION")
    k = keys.add_parser("create", parents=[common], help="make a key for a user; printed once, on stdout")
    k.add_argument("name")
    k.add_argument("--label", default="", help="a note to recognise the key by (e.g. the tool that uses it)")
    k = keys.add_parser("list", parents=[common], help="list keys (never their secrets)")
    k.add_argument("name", nargs="?")
    k = keys.add_parser("revoke", parents=[common], help="delete a key by its id")
    k.add_argument("key_id", metavar="ID")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.config = getattr(args, "config", None)
    args.store = getattr(args, "store", None)
    overrides: dict = {"store": args.store}
    if args.command == "watch" and args.polling:
        overrides["watch"] = {"polling": True}
    if args.command == "serve":
        server = {k: v for k, v in {"host": args.host, "port": args.port, "insecure_no_auth": args.insecure_no_auth}.items()
                  if v is not None}
        if server:
            overrides["server"] = server
    try:
        settings = load_settings(args.config, **overrides)
    except ConfigError as exc:
        print(f"ragchat: {exc}", file=sys.stderr)
        return 2
    try:
        return _COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        print(f"ragchat: {exc}", file=sys.stderr)
        return 2
    except RagchatError as exc:
        print(f"ragchat: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ragchat: interrupted", file=sys.stderr)
        return 130


def _engine(settings: Settings, **kw):
    from ragchat.engine import Engine

    return Engine(settings, **kw)


def cmd_ingest(settings: Settings, args) -> int:
    from ragchat.ingest.pipeline import collect

    files = collect(args.paths)
    if settings.shared_mode:
        return _ingest_through_queue(settings, files, args)
    with _engine(settings) as eng:
        for r in eng.recover():
            print(f"{r.source}: {r.line()} (resumed after an interruption)", flush=True)
        width = max((len(f.source) for f in files), default=0)
        failed = 0
        for f in files:
            (r,) = eng.ingestor.ingest([f], args.collection or settings.collection, password=args.password)
            failed += r.outcome == "failed"
            print(f"{r.source:<{width}}  {r.line()}", flush=True)
    return 1 if failed else 0


def _ingest_through_queue(settings: Settings, files, args) -> int:
    """Shared mode: the files become jobs of the catalog's queue, which this process serves too, so
    a job outlives this command if it is killed (another process takes it over)."""
    from ragchat.ingest.queue import QueueWorker

    width = max((len(f.source) for f in files), default=0)
    with _engine(settings) as eng:
        eng.check_services()
        worker = QueueWorker(eng).start()
        try:
            rows = eng.queue.run_files(files, args.collection or settings.collection, password=args.password)
        finally:
            worker.stop()
    for r in rows:
        print(f"{r.source:<{width}}  {r.message}", flush=True)
    return 1 if any(r.status == "failed" for r in rows) else 0


def cmd_watch(settings: Settings, args) -> int:
    """`ragchat watch DIR`: finish any interrupted ingestion, catch up with the folder, then print
    one line per synced file (and "in step: ..." whenever nothing is pending) until Ctrl+C or
    SIGTERM."""
    import signal
    import threading

    from ragchat.ingest.watch import FolderWatcher

    def out(line: str) -> None:
        print(line, flush=True)

    stop = threading.Event()
    with _engine(settings) as eng:
        for r in eng.recover():
            out(f"{r.source}  {r.line()} (resumed after an interruption)")
        w = FolderWatcher(eng, args.folder, args.collection, settle_s=settings.watch.settle_s,
                          polling=settings.watch.polling, poll_interval_s=settings.watch.poll_interval_s,
                          on_result=lambda source, line: out(f"{source}  {line}"),
                          on_idle=lambda n: out(f"in step: {n} documents in {w.collection}"))
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            w.start()
            out(f"watching {w.root} into collection {w.collection!r} ({w.mode}; Ctrl+C to stop)")
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            w.stop()
            signal.signal(signal.SIGTERM, previous)
    out("stopped")
    return 0


def cmd_docs(settings: Settings, args) -> int:
    with _engine(settings) as eng:
        docs = eng.catalog.documents()
    if args.json:
        print(json.dumps([d.as_dict() for d in docs], ensure_ascii=False))
        return 0
    if not docs:
        print("no documents yet: run `ragchat ingest PATH`")
        return 0
    print(f"{'source':<48} {'pages':>5} {'chunks':>6}  {'status':<8} collection")
    for d in docs:
        status = d.status if d.status != "failed" else f"failed: {d.error}"
        print(f"{d.source:<48} {d.pages:>5} {d.chunks:>6}  {status:<8} {d.collection}")
    return 0


def cmd_remove(settings: Settings, args) -> int:
    missing = 0
    with _engine(settings) as eng:
        for source in args.sources:
            docs = [d for d in eng.catalog.documents() if d.source == source and (not args.collection or d.collection == args.collection)]
            if not docs:
                print(f"{source}: not found (see `ragchat docs`)")
                missing += 1
            for d in docs:
                eng.ingestor.remove(d.id)
                print(f"{source}: removed {d.chunks} chunks from {d.collection}")
    return 1 if missing else 0


def cmd_reindex(settings: Settings, args) -> int:
    with _engine(settings, allow_model_change=True) as eng:
        results = eng.reindex()
        print(f"reindexed {len(results)} documents, {sum(r.chunks for r in results)} chunks with {eng.embedder.model_id}")
    return 0


def cmd_worker(settings: Settings, args) -> int:
    import signal
    import threading

    from ragchat.ingest.queue import QueueWorker

    if not settings.shared_mode:
        raise ConfigError("`ragchat worker` serves the job queue of shared mode: set shared.chroma_url and catalog_url "
                          "(docs/DEPLOY.md); a single server ingests by itself")
    with _engine(settings) as eng:
        for note in eng.check_services():
            print(f"ragchat: note: {note}", file=sys.stderr, flush=True)
        eng.ingestor  # the embedding model, Chroma and the parser, before the first job
        worker = QueueWorker(eng)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(f"ragchat worker {worker.name} is taking jobs (Ctrl+C to stop)", flush=True)
        worker.start()
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        worker.stop()
    return 0


def cmd_llm_server(settings: Settings, args) -> int:
    import os
    import threading

    from ragchat.llm.builtin import serve_builtin

    key = args.api_key or os.environ.get("RAGCHAT_LLM_SERVER_KEY") or ""
    server = serve_builtin(settings.llm, args.host, args.port, key)
    print(f"the built-in model answers at {server.url}/v1 (Ctrl+C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_ask(settings: Settings, args) -> int:
    from ragchat.retrieve.search import Filters

    with _engine(settings) as eng:
        answer, streamed = None, []
        for ev in eng.chat.stream(args.question, filters=Filters(collections=args.collection)):
            if ev.kind == "token" and not args.json:
                streamed.append(ev.text)
                print(ev.text, end="", flush=True)
            elif ev.kind == "done":
                answer = ev.answer
    if answer.notice:
        print(f"note: {answer.notice}", file=sys.stderr)
    if args.json:
        print(json.dumps({
            "answer": answer.text, "provider": answer.provider, "model": answer.model, "partial": answer.partial,
            "error": answer.error, "unsupported": answer.unsupported,
            "sources": [{"id": s.id, "source": s.source, "page": s.page, "text": s.text, "score": s.score} for s in answer.sources],
        }, ensure_ascii=False))
    else:
        if "".join(streamed).strip() != answer.text:  # citation markers were added, or nothing was streamed
            print(("\n\n" if streamed else "") + answer.text, end="")
        print()
        if answer.sources:
            print("\nSources:")
        for s in answer.sources:
            page = f", page {s.page}" if s.page is not None else ""
            print(f"[{s.id}] {s.source}{page}: {' '.join(s.text.split())[:160]}")
        if answer.error:
            print(f"{'(partial answer) ' if answer.partial else ''}{answer.error}", file=sys.stderr)
    return 1 if answer.error else 0


def cmd_serve(settings: Settings, args) -> int:
    from ragchat.ui.server import serve

    serve(settings)
    return 0


def cmd_eval(settings: Settings, args) -> int:
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    if args.answers:
        from ragchat.eval.answers import run_answer_eval

        if args.mode:
            settings = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update={"mode": args.mode})})
        return run_answer_eval(settings, args.beir_dir, split=args.split, as_json=args.json, store=args.store,
                               limit=args.limit, details=args.details, conversation=args.conversation, files=args.files)
    if args.details or args.conversation or args.files:
        raise ConfigError("--details, --conversation and --files go with --answers")
    from ragchat.eval.retrieval import run_eval

    return run_eval(settings, args.beir_dir, split=args.split, mode=args.mode, as_json=args.json,
                    store=args.store, limit=args.limit)


def cmd_users(settings: Settings, args) -> int:
    from ragchat.auth import users_command

    return users_command(settings, args)


def cmd_feedback(settings: Settings, args) -> int:
    from ragchat.answer.feedback import FeedbackBook
    from ragchat.store.catalog import Catalog
    from ragchat.store.feedback import ALL

    catalog = Catalog(settings.catalog_sqlalchemy_url, shared=settings.shared_mode)  # no store lock: the app may run
    try:
        reader = ALL if args.all else args.user
        done = FeedbackBook(catalog, settings).export(args.out, reader, everyone=args.all)
    finally:
        catalog.close()
    print(f"{args.out}: {done.line()}")
    print(f"measure with: ragchat eval {args.out} --answers")
    return 0 if done.questions else 1


_COMMANDS = {
    "ingest": cmd_ingest, "watch": cmd_watch, "docs": cmd_docs, "remove": cmd_remove, "reindex": cmd_reindex, "ask": cmd_ask,
    "serve": cmd_serve, "worker": cmd_worker, "llm-server": cmd_llm_server, "eval": cmd_eval, "users": cmd_users,
    "feedback": cmd_feedback,
}


def run() -> None:
    """The `ragchat` command: main(), then leave without the interpreter's final clean-up. Native threads
    of llama.cpp and ONNX Runtime can crash that clean-up (SIGSEGV after all the work was done: seen at
    the end of `ragchat eval --answers`); every store is closed by then, and nothing is left to write."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    run()
