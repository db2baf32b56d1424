"""``/login`` and ``/logout``: the sign-in page and form, answered by ``SecurityMiddleware``.

``/login`` shows the sign-in page (GET) or takes a post (POST) as a form (what browsers and
``gradio_client.Client(url, auth=(name, password))`` send) or as JSON, of at most
``LOGIN_BODY_LIMIT`` bytes. A correct name and password set the session cookie: a browser is sent
on to its ``next`` page, other clients get ``{"success": true, "user": name}``. Failed logins are
throttled per client address and per user name (``LoginThrottle``). ``/logout`` clears the cookie.
"""

from __future__ import annotations

import html

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ragchat.auth.sessions import SESSION_COOKIE, SESSION_TTL_S
from ragchat.auth.web import WebSecurity, safe_next

LOGIN_BODY_LIMIT = 16 * 1024
NO_STORE = {"cache-control": "no-store", "x-content-type-options": "nosniff"}

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · ragchat</title>
<style>body{{font-family:system-ui,sans-serif;background:#f6f7f9;display:flex;min-height:100vh;align-items:center;
justify-content:center;margin:0}}form{{background:#fff;padding:2rem;border-radius:12px;box-shadow:0 2px 12px #0002;
width:min(340px,90vw)}}label{{display:block;margin:.8rem 0 .2rem}}input{{width:100%;padding:.5rem;box-sizing:border-box}}
button{{margin-top:1.2rem;width:100%;padding:.6rem;border:0;border-radius:8px;background:#2563eb;color:#fff;font-size:1rem}}
.err{{color:#b91c1c}}</style></head>
<body><form method="post" action="{action}"><h1>ragchat</h1>{error}
<label for="u">User name</label><input id="u" name="username" autocomplete="username" required autofocus>
<label for="p">Password</label><input id="p" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{next}"><button type="submit">Sign in</button></form></body></html>"""

_PAGE_HEADERS = {
    **NO_STORE,
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
}


class _TooLarge(Exception):
    pass


def json_answer(status: int, content: dict) -> JSONResponse:
    """A JSON answer of the middleware's own (never cached)."""
    return JSONResponse(content, status, headers=NO_STORE)


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, 303, headers=NO_STORE)


def set_session_cookie(response: Response, token: str, secure: bool) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL_S, path="/", httponly=True, samesite="Lax",
                        secure=secure)


def clear_session_cookie(response: Response) -> None:
    response.set_cookie(SESSION_COOKIE, "", max_age=0, path="/", httponly=True, samesite="Lax")


def _login_page(status: int, root: str, target: str, error: str) -> HTMLResponse:
    page = _LOGIN_PAGE.format(
        action=html.escape(root + "/login"), next=html.escape(target),
        error=f'<p class="err">{html.escape(error)}</p>' if error else "",
    )
    return HTMLResponse(page, status, headers=_PAGE_HEADERS)


async def _read_form(request: Request) -> dict[str, str]:
    """The posted fields: a JSON object, or a form. Raises _TooLarge past LOGIN_BODY_LIMIT."""
    if "json" in request.headers.get("content-type", ""):
        try:
            data = await request.json()
        except ValueError:
            return {}
        return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    try:
        async with request.form() as form:
            return {k: v for k, v in form.items() if isinstance(v, str)}
    except HTTPException:  # a malformed multipart body
        return {}


def _limited(receive, limit: int):
    """receive, raising _TooLarge once the body passes limit bytes."""
    size = 0

    async def limited():
        nonlocal size
        message = await receive()
        size += len(message.get("body", b""))
        if size > limit:
            raise _TooLarge
        return message

    return limited


async def login_routes(sec: WebSecurity, scope, receive) -> Response:
    """The answer to a request for /login or /logout."""
    request = Request(scope, _limited(receive, LOGIN_BODY_LIMIT))
    browser = "text/html" in request.headers.get("accept", "")
    root = scope.get("root_path", "")
    if not sec.login_required:
        return json_answer(404, {"detail": "login is not enabled on this server (no users configured)"})
    if scope.get("path") == "/logout":
        response = redirect(root + "/login") if browser else json_answer(200, {"success": True})
        clear_session_cookie(response)
        return response
    if request.method in ("GET", "HEAD"):
        return _login_page(200, root, safe_next(request.query_params.get("next") or "/"), "")
    if request.method != "POST":
        return json_answer(405, {"detail": "use GET or POST"})
    try:
        form = await _read_form(request)
    except _TooLarge:
        return json_answer(413, {"detail": "login request too large"})
    name, password = form.get("username", "").strip(), form.get("password", "")
    target = safe_next(form.get("next") or request.query_params.get("next") or "/")
    client = request.client.host if request.client else "?"
    # counted as a failure from here on, in the catalog every server shares, unless it succeeds
    attempt = await run_in_threadpool(sec.throttle.begin, f"ip:{client}", f"user:{name}")
    if attempt is None:
        return json_answer(429, {"detail": "too many failed logins: wait a few minutes and try again"})
    token = await run_in_threadpool(sec.login, name, password)  # argon2 takes a while: off the event loop
    if token is None:
        if browser:
            return _login_page(401, root, target, "Wrong user name or password.")
        return json_answer(401, {"detail": "wrong user name or password"})
    await run_in_threadpool(sec.throttle.succeeded, attempt, f"user:{name}")
    response = redirect(root + target) if browser else json_answer(200, {"success": True, "user": name})
    secure = scope.get("scheme") == "https" or request.headers.get("x-forwarded-proto") == "https"
    set_session_cookie(response, token, secure)
    return response
