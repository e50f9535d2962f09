"""What a browser carries between pages: the sign-in, the CSRF token and the language.

- Sign-in: the same accounts and the same tokens as the API (``registry.add_token``, label ``web``,
  12 hours), kept in an HttpOnly, SameSite=Lax cookie; signing out deletes the token.
- CSRF: a random per-browser token in its own cookie (SameSite=Strict) that every form posts back
  as the hidden field ``csrf`` (the double-submit pattern: another site can make a browser post a
  form, but it can neither read nor set this cookie).  A post without the match is refused (403)
  before anything else is read from it.
- Language: ``?lang=en`` or ``?lang=vi`` on any page sets the ``loa_lang`` cookie; Vietnamese by default.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response
from sqlalchemy import delete

from central import db, registry
from central.access import Scope
from central.auth import TOKEN_LIFETIME, CentralDep
from central.passwords import new_secret, token_digest

SESSION_COOKIE = "loa_session"
CSRF_COOKIE = "loa_csrf"
LANG_COOKIE = "loa_lang"
LANGUAGES = ("vi", "en")


class SignInNeeded(Exception):
    """No valid sign-in cookie: the page answers with a redirect to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url
        super().__init__(next_url)


@dataclass(frozen=True)
class Browser:
    """One request's browser: its language, its CSRF token, and its sign-in when it has one."""

    lang: str
    csrf: str
    new_csrf: bool
    new_lang: bool
    scope: Scope | None


def browser_of(request: Request, central: CentralDep) -> Browser:
    asked = request.query_params.get("lang")
    lang = asked if asked in LANGUAGES else request.cookies.get(LANG_COOKIE, "vi")
    lang = lang if lang in LANGUAGES else "vi"
    csrf = request.cookies.get(CSRF_COOKIE, "")
    fresh = len(csrf) < 20
    if fresh:
        csrf = secrets.token_urlsafe(24)
    token = request.cookies.get(SESSION_COOKIE)
    user = registry.user_for_token(central.engine, token, central.clock()) if token else None
    scope = Scope(user, registry.all_units(central.engine)) if user is not None else None
    return Browser(lang, csrf, fresh, asked in LANGUAGES, scope)


BrowserDep = Annotated[Browser, Depends(browser_of)]


def signed_in(request: Request, browser: BrowserDep) -> Scope:
    if browser.scope is None:
        raise SignInNeeded(str(request.url.path))
    return browser.scope


PageScope = Annotated[Scope, Depends(signed_in)]


async def check_csrf(request: Request, browser: BrowserDep) -> None:
    """Every form post carries the browser's CSRF token, else 403 before the form is used."""
    form = await request.form()
    sent = form.get("csrf")
    if browser.new_csrf or not isinstance(sent, str) or not secrets.compare_digest(sent, browser.csrf):
        raise HTTPException(403, "the form is stale or came from another site: reload the page and try again")


CsrfChecked = Depends(check_csrf)


def remember(response: Response, browser: Browser, secure: bool) -> Response:
    """Set the cookies a page's answer must carry (a new CSRF token, a chosen language)."""
    if browser.new_csrf:
        response.set_cookie(CSRF_COOKIE, browser.csrf, httponly=True, samesite="strict", secure=secure)
    if browser.new_lang:
        response.set_cookie(LANG_COOKIE, browser.lang, max_age=365 * 86400, samesite="lax", secure=secure)
    return response


def sign_in(central: CentralDep, response: Response, user: registry.User, secure: bool) -> None:
    token = new_secret(32)
    registry.add_token(central.engine, user.id, token, "web", central.clock() + TOKEN_LIFETIME)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(TOKEN_LIFETIME.total_seconds()), httponly=True,
                        samesite="lax", secure=secure)  # fmt: skip


def sign_out(central: CentralDep, request: Request, response: Response) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with central.engine.begin() as conn:
            conn.execute(delete(db.api_tokens).where(db.api_tokens.c.token_sha256 == token_digest(token)))
    response.delete_cookie(SESSION_COOKIE)
