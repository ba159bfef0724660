"""A real browser drives the UI: Playwright with Debian's headless chromium.

Never downloads a browser: chromium comes from apt (``/usr/bin/chromium``, or
``$CHROMIUM``) and is launched with ``executable_path``. Skipped when chromium
or playwright is missing, unless ``REQUIRE_BROWSER=1`` (CI), where that fails.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from tests.web.conftest import CHROMIUM, make_app

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def serve(app):
    """The app served by werkzeug on a free 127.0.0.1 port, in a thread: yields its address."""
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def server(app):
    """The tiny bundle's app, served (:func:`serve`)."""
    yield from serve(app)


@pytest.fixture(scope="module")
def films_server(films_bundle):
    """The app over real titles (``tests.conftest.FILMS``), served."""
    yield from serve(make_app(films_bundle))


def line_boxes(elements) -> list[int]:
    """How many lines the text of each element of a Playwright locator takes on the page."""
    return elements.evaluate_all(
        "found => found.map(e => { const r = document.createRange(); r.selectNodeContents(e); "
        "return r.getClientRects().length; })"
    )


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_search_movie_similar_and_user_in_a_browser(browser, server, rec, tmp_path, viewport):
    from playwright.sync_api import expect

    counts = rec.bundle.movies["rating_count"].to_numpy()
    movie = int(rec.movie_ids[int(np.argmax(counts))])
    title = rec.catalogue.movie(movie)["title"]
    user = int(rec.user_ids[0])
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        # 1. type a title into the search box: suggestions appear as you type
        page.goto(server + "/")
        # The navigation's links stay on one line (on a phone, below the brand): none is left alone.
        tops = page.locator("nav a:not(.brand)").evaluate_all(
            "as => as.map(a => a.getBoundingClientRect().top)"
        )
        assert len(tops) == 4 and len(set(tops)) == 1, tops
        page.locator("#q").press_sequentially(title, delay=20)
        suggestion = page.locator("#suggestions a", has_text=title).first
        expect(suggestion).to_be_visible(timeout=10_000)
        page.screenshot(path=str(tmp_path / "1-suggestions.png"), full_page=True)
        page.locator("h1").click()  # a click outside closes the list
        expect(page.locator("#suggestions")).to_be_hidden()
        page.locator("#q").press("End")
        page.locator("#q").press_sequentially(" ")  # typing again brings it back
        expect(suggestion).to_be_visible(timeout=10_000)

        # 2. open the movie
        suggestion.click()
        expect(page).to_have_url(re.compile(rf"/movies/{movie}$"))
        expect(page.locator("h1")).to_have_text(title)

        # 3. a non-empty "movies like this" list of links
        similar = page.locator("#similar tbody tr")
        expect(similar.first).to_be_visible()
        assert similar.count() == 10
        page.screenshot(path=str(tmp_path / "2-movie.png"), full_page=True)

        # 4. a user page with recommendations, from the home page's user box
        page.goto(server + "/")
        page.locator("#user-id").fill(str(user))
        page.locator("#user-id").press("Enter")
        expect(page).to_have_url(re.compile(rf"/users/{user}$"))
        recommendations = page.locator("#recommendations tbody tr")
        expect(recommendations.first).to_be_visible()
        assert recommendations.count() == 10
        first = rec.catalogue.items(*rec.recommend(user, k=1))[0]
        expect(recommendations.first.locator("a").first).to_have_text(first["title"])

        # 5. a screenshot
        shot = tmp_path / "3-user.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        context.close()
    assert not errors, errors


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_model_page_keeps_words_whole_and_fits_the_screen(browser, server, viewport):
    context = browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        page.goto(server + "/model")
        rankers = page.locator("#ranking ~ table tbody td:nth-child(2)")
        assert rankers.count() >= 3
        lines = line_boxes(rankers)  # a word broken across lines ("popularit" / "y") makes two
        assert lines == [1] * len(lines), dict(zip(rankers.all_inner_texts(), lines))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        context.close()


@pytest.mark.browser
def test_api_docs_page_and_a_blank_rating_that_keeps_the_form(browser, server, rec, tmp_path):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))

    def console(msg) -> None:
        # The refused form answers 400 by design (the page itself, with the message): not an error here.
        refused_form = msg.location["url"].startswith(server + "/for-me?") and "status of 400" in msg.text
        if msg.type == "error" and not refused_form:
            errors.append(msg.text)

    page.on("console", console)
    try:
        # The navigation's API link opens Swagger UI (served from its package), listing every route.
        page.goto(server + "/")
        page.locator("nav a", has_text="API").click()
        expect(page).to_have_url(re.compile(r"/api/swagger$"))
        operations = page.locator(".swagger-ui .opblock")
        expect(operations.first).to_be_visible(timeout=20_000)
        assert operations.count() == 9
        page.screenshot(path=str(tmp_path / "api-docs.png"), full_page=True)
        assert not errors, errors  # Swagger UI runs under the page's CSP, its assets all load

        # A title without its rating: the page comes back (status 400, which the console reports) with the
        # title typed and the message beside it.
        title = rec.catalogue.movie(int(rec.movie_ids[0]))["title"]
        page.goto(server + "/for-me")
        page.locator("input[name=title]").first.fill(title)
        page.locator("form.card button[type=submit]").click()
        expect(page.locator("[role=alert]").first).to_contain_text("rating 1 must be a number")
        expect(page.locator("input[name=title]").first).to_have_value(title)
        page.screenshot(path=str(tmp_path / "for-me-blank-rating.png"), full_page=True)
    finally:
        context.close()
    assert not errors, errors


@pytest.mark.browser
def test_titles_a_person_types_are_resolved_or_offered_as_choices(browser, films_server, tmp_path):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        # A misspelling is taken as the film it clearly means, and the page says which.
        page.goto(films_server + "/for-me")
        titles, ratings = page.locator("input[name=title]"), page.locator("input[name=rating]")
        titles.nth(0).fill("Starwarz")
        ratings.nth(0).fill("5")
        titles.nth(1).fill("godfather")
        ratings.nth(1).fill("4")
        page.locator("form.card button[type=submit]").click()
        expect(page.locator("#your-ratings")).to_contain_text("Starwarz → Star Wars (1977): 5")
        # A title naming two films keeps the form and offers both; a click takes one and keeps the rest.
        expect(page.locator("[role=alert]").first).to_contain_text("2 movies match 'godfather': which one?")
        choices = page.locator("ul.choices a")
        expect(choices).to_have_text(["Godfather, The (1972)", "Godfather: Part II, The (1974)"])
        page.screenshot(path=str(tmp_path / "for-me-choices.png"), full_page=True)
        choices.nth(1).click()
        expect(page.locator("#your-ratings")).to_contain_text("Godfather: Part II, The (1974): 4")
        expect(page.locator("#your-ratings")).to_contain_text("Star Wars (1977): 5")
        expect(page.locator("[role=alert]")).to_have_count(0)

        # A user's page at desktop width gives titles room: none wraps onto more than two lines.
        page.goto(films_server + "/users/1")
        cells = page.locator("td.title a")
        assert cells.count() >= 3
        heights = line_boxes(cells)
        assert max(heights) <= 2, dict(zip(cells.all_inner_texts(), heights))
        page.screenshot(path=str(tmp_path / "user-desktop.png"), full_page=True)
    finally:
        context.close()
