"""The HTML pages: every page renders what the issue asks for, with links."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from html import unescape as html_unescape

import numpy as np
import pytest

from embedder.config import one_method_settings
from tests.web.conftest import make_app
from tests.web.test_api import some_movie, some_user
from web.state import BROWSE_SHOWN, WebState


def get_html(client, url, status=200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def test_home_has_search_box_user_box_and_figures(client, rec):
    html = get_html(client, "/")
    assert 'id="q"' in html and 'data-suggest="/api/v1/movies"' in html and "suggest.js" in html
    assert 'name="id"' in html and 'action="/users"' in html
    summary = WebState(rec).summary
    assert f"{summary['test_rmse']:.4f}" in html
    assert f"<dd>{summary['n_users']}</dd>" in html and f"<dd>{summary['n_movies']}</dd>" in html


def test_static_files(client):
    for name, kind in (("style.css", "text/css"), ("suggest.js", "text/javascript")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.mimetype == kind
        response.close()
    js = client.get("/static/suggest.js").get_data(as_text=True)
    assert ".innerHTML" not in js and "textContent" in js


def test_user_id_form_redirects(client, rec):
    user = some_user(rec)
    response = client.get(f"/users?id=%20{user}%20")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/users/{user}")
    # A bad id shows the home page again, with what was typed and the message beside the box.
    html = get_html(client, "/users?id=abc", 400)
    assert (
        'id="user-id"' in html
        and 'value="abc"' in html
        and "a user id is a whole number, got &#39;abc&#39;" in html
    )
    assert "type a user id" in get_html(client, "/users", 400)
    missing = int(rec.user_ids.max()) + 1
    assert f"unknown user {missing}" in get_html(client, f"/users?id={missing}", 400)


def test_user_page_shows_recommendations_beside_own_ratings(client, rec):
    user = some_user(rec)
    html = get_html(client, f"/users/{user}?k=4")
    ids, scores, _ = rec.recommend(user, k=4)
    recs = html.split('id="recommendations"')[1].split('id="rated"')[0]
    low, high = rec.bundle.rating_scale
    for movie_id, score in zip(ids, scores):
        assert f'href="/movies/{movie_id}"' in recs
        assert f">{min(max(score, low), high):.2f}<" in recs  # reported clipped to the scale
        if score > high:
            assert f'title="raw prediction {score:.2f}"' in recs
    assert recs.count('<td class="title"><a href="/movies/') == 4  # besides the "because you rated" links
    rated_ids, ratings = rec.catalogue.user_ratings(user)
    rated = html.split('id="rated"')[1]
    assert f'href="/movies/{rated_ids[0]}"' in rated and f"{ratings[0]:.1f}" in rated
    assert f"{len(rated_ids)} rating" in rated


def test_user_page_include_seen_checkbox(client, rec):
    user = some_user(rec)
    html = get_html(client, f"/users/{user}?include_seen=1&k=3")
    assert 'name="include_seen" value="1" checked' in html
    ids, _, _ = rec.recommend(user, k=3, exclude_seen=False)
    assert all(f'href="/movies/{i}"' in html for i in ids)


def test_movie_page(client, rec):
    movie = some_movie(rec)
    info = rec.catalogue.movie(movie)
    html = get_html(client, f"/movies/{movie}?k=6")
    assert f"<h1>{info['title']}</h1>" in html
    assert ", ".join(info["genres"]) in html
    assert f"<dd>{info['rating_count']}</dd>" in html and f"{info['mean_rating']:.2f}" in html
    assert f'href="/clusters/{info["cluster"]}"' in html
    similar = html.split('id="similar"')[1]
    ids, scores = rec.similar(movie, k=6)
    assert similar.count('href="/movies/') == 6
    assert all(f'href="/movies/{i}"' in similar for i in ids)


def test_search_page(client, rec):
    title = rec.catalogue.movie(some_movie(rec))["title"]
    html = get_html(client, "/search?q=" + title[:6])
    assert f'href="/movies/{some_movie(rec)}"' in html
    assert "Type part of a title" in get_html(client, "/search")


def test_clusters_page_and_map(client, rec):
    html = get_html(client, "/clusters")
    assert html.count('class="card cluster"') == 4
    figures = rec.bundle.manifest["clusters"]  # NMI with genres beside its random baseline
    assert (
        f"genre\n  <strong>{figures['nmi_genres']:.3f}</strong>, against {figures['nmi_random']:.3f} for"
        in html
    )
    assert '<img src="/clusters/map.svg"' in html
    for cluster in rec.catalogue.clusters():
        assert f'href="/clusters/{cluster["cluster"]}"' in html
        assert f'href="/movies/{cluster["top_movies"][0]["movie_id"]}"' in html
    response = client.get("/clusters/map.svg")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    svg = ET.fromstring(response.get_data())
    paths = svg.findall(".//{http://www.w3.org/2000/svg}path")
    assert len(paths) == 4
    assert sum(p.get("d").count("M") for p in paths) == len(rec.movie_ids)


def test_cluster_page_sorts(client, rec):
    html = get_html(client, "/clusters/2")
    members = rec.catalogue.cluster_members(2)
    positions = [html.index(f'href="/movies/{m}"') for m in members]
    assert positions == sorted(positions)
    titled = get_html(client, "/clusters/2?sort=title")
    assert "<strong>title</strong>" in titled and 'href="/clusters/2?sort=popularity"' in titled


def test_model_page(client, rec):
    html = get_html(client, "/model")
    assert '<img src="/model/training_curve.png"' in html
    manifest = rec.bundle.manifest
    assert f"{manifest['metrics']['test']['rmse']:.4f}" in html
    assert f"{manifest['metrics']['val']['rmse']:.4f}" in html
    assert html.count('<tr class="best">') == 1
    png = client.get("/model/training_curve.png")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.get_data() == (rec.bundle.path / "training_curve.png").read_bytes()
    png.close()


def test_model_page_names_the_curves_its_bundle_has(built_bundle):
    app = make_app(built_bundle)
    client = app.test_client()
    # The tiny bundle's Gibbs run used all training rows: no validation curve to name or tabulate.
    html = get_html(client, "/model")
    assert "<dt>best sweep</dt>" in html and "<dt>sweeps run</dt>" in html and "epoch" not in html
    assert (
        '<td>val <span class="note">(also trained on: not a held-out figure, so it can be below train)</span></td>'
        in html
    )  # its error is not a held-out figure
    assert "<figcaption>Train RMSE per sweep.</figcaption>" in html and 'alt="Train RMSE per sweep"' in html
    assert "Val RMSE" not in html
    # A run that chose its length on validation rows, then refit on all of them.
    history = [
        {"epoch": n, "train_rmse": 0.9 - n / 100, "val_rmse": 0.95 - n / 200, "phase": "validation"}
        for n in (1, 2, 3)
    ]
    history += [{"epoch": n, "train_rmse": 0.9 - n / 100, "val_rmse": None, "phase": "refit"} for n in (1, 2)]
    app.extensions["movie_web"].__dict__["history"] = history
    app.extensions["movie_web"].rec.bundle.manifest["training"]["val_in_training"] = (
        False  # this app's own copy
    )
    html = get_html(client, "/model")
    assert (
        "<figcaption>Train and validation RMSE per sweep; dashed, the refit on all training rows."
        "</figcaption>" in html
    )
    assert "<td>val</td>" in html and "also trained on" not in html
    assert '<th class="num">Val RMSE</th>' in html and '<td class="num">0.9350</td>' in html


def test_model_page_without_curve_or_history(tmp_path):
    """A bundle written without training (no history.csv, no curve) still has a model page."""
    from tests.conftest import write_synthetic_bundle

    rng = np.random.default_rng(0)
    write_synthetic_bundle(tmp_path / "b", rng.normal(size=(5, 3)), rng.normal(size=(8, 3)))
    client = make_app(tmp_path / "b").test_client()
    html = get_html(client, "/model")
    assert "no training curve" in html
    get_html(client, "/model/training_curve.png", 404)
    assert client.get("/api/v1/model").get_json()["history"] == []


@pytest.mark.parametrize("url", ["/users/99999", "/movies/99999", "/clusters/17", "/no/such/page"])
def test_not_found_is_a_friendly_page(client, url):
    html = get_html(client, url, 404)
    assert "Back to the start page" in html and "Traceback" not in html


def test_unbuilt_bundle_pages(unbuilt_app):
    client = unbuilt_app.test_client()
    rec = unbuilt_app.extensions["movie_web"].rec
    for url in ("/clusters", "/clusters/0", "/clusters/map.svg"):
        assert "python -m search build" in get_html(client, url, 404)
    html = get_html(client, f"/movies/{some_movie(rec)}")
    assert "not built" in html
    get_html(client, f"/users/{some_user(rec)}")
    assert "not built" in get_html(client, "/")


def test_pages_fit_a_phone(client):
    html = get_html(client, "/")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_pages_ignore_unknown_query_parameters(client, rec):
    user = some_user(rec)
    assert get_html(client, f"/users/{user}?utm_source=mail&k=3").count('href="/movies/') >= 3
    get_html(client, "/?ref=x")


def test_html_answers_carry_a_content_security_policy(client):
    for url, status in (("/", 200), ("/movies/999999", 404)):
        response = client.get(url)
        assert response.status_code == status
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in client.get("/api/v1/healthz").headers


def test_a_training_curve_changed_or_removed_after_loading_is_not_served(built_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(built_bundle, copy)
    client = make_app(copy).test_client()
    assert client.get("/model/training_curve.png").status_code == 200
    (copy / "training_curve.png").write_bytes(b"not the picture that was verified")
    assert client.get("/model/training_curve.png").status_code == 404
    (copy / "training_curve.png").unlink()
    (copy / "training_curve.png").symlink_to("/etc/passwd")
    response = client.get("/model/training_curve.png")
    assert response.status_code == 404 and b"root:" not in response.get_data()


def test_the_newcomer_page_recommends_from_rated_titles(client, rec):
    first, second = (rec.catalogue.movie(int(m)) for m in rec.movie_ids[:2])
    low, high = rec.bundle.rating_scale
    query = {
        "title": [first["title"], second["title"], "zzzz no such film", ""],
        "rating": [str(high), str(low), "3", ""],
    }
    page = client.get("/for-me", query_string=query)
    assert page.status_code == 400  # the unknown title is shown beside its field; the others still count
    html = page.get_data(as_text=True)
    expected, _, _ = rec.recommend_for_ratings({first["movie_id"]: high, second["movie_id"]: low}, k=10)
    shown = [int(m) for m in re.findall(r'<td class="title">\s*<a href="/movies/(\d+)"', html)]
    assert shown == expected.tolist()
    assert "No title matches zzzz no such film." in html and "for you" in html
    assert 'value="zzzz no such film"' in html and f"{first['title']}</a>: {high:g}" in html


def test_the_newcomer_page_without_ratings_says_it_is_the_average_user(client):
    html = client.get("/for-me").get_data(as_text=True)
    assert "No ratings yet" in html and "for an average user" in html


@pytest.mark.parametrize(
    "query, message",
    [("title=x&rating=abc", "rating 1 must be a number"), ("title=x&rating=", "rating 1 must be a number")],
)
def test_the_newcomer_page_names_a_bad_rating(client, rec, query, message):
    title = rec.catalogue.movie(int(rec.movie_ids[0]))["title"]
    response = client.get("/for-me?" + query.replace("title=x", f"title={title}"))
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and message in html
    # The form is shown again as typed, the message beside the row, not a bare error page.
    assert 'name="title" type="search"' in html and f'value="{title}"' in html and 'role="alert"' in html


@pytest.mark.parametrize(
    "url, typed, message",
    [
        ("/users/{user}?k=abc", 'value="abc"', "k: Input should be a valid integer"),
        ("/users/{user}?k=500&include_seen=1", 'value="500"', "k: Input should be less than or equal to 100"),
        (
            "/movies/{movie}?min_ratings=-3",
            'value="-3"',
            "min_ratings: Input should be greater than or equal to 0",
        ),
        (
            "/search?q=" + "a" * 201,
            'value="' + "a" * 201 + '"',
            "q: String should have at most 200 characters",
        ),
        ("/clusters/0?sort=best", "", "sort: Input should be"),
        ("/for-me?title=x&rating=4&k=0", "", "k: Input should be greater than or equal to 1"),
    ],
)
def test_a_refused_value_keeps_the_page_and_the_input(client, rec, url, typed, message):
    html = get_html(client, url.format(user=some_user(rec), movie=some_movie(rec)), 400)
    assert typed in html and message in html and "Back to the start page" not in html


def test_the_newcomer_page_refuses_a_rating_off_the_scale(client, rec):
    title = rec.catalogue.movie(int(rec.movie_ids[0]))["title"]
    response = client.get("/for-me", query_string={"title": title, "rating": "99"})
    assert response.status_code == 400 and "must be a number from" in response.get_data(as_text=True)


@pytest.fixture(scope="module")
def unclustered_client(tmp_path_factory):
    """An app over a built bundle with movies that have no training ratings (zero
    embeddings), which ``search build`` leaves unclustered (label -1)."""
    from search.build import build
    from tests.search.conftest import planted_arrays, write_planted_bundle
    from tests.search.test_clusters import planted_with_zero_rows

    padded = planted_with_zero_rows(planted_arrays())
    path = tmp_path_factory.mktemp("web-unclustered") / "bundle"
    write_planted_bundle(path, padded)
    build(path, n_clusters=5)
    app = make_app(path)
    return app.test_client(), app.extensions["movie_web"].rec, padded


def test_pages_show_no_cluster_for_unclustered_movies(unclustered_client):
    client, rec, padded = unclustered_client
    unrated = int(rec.movie_ids[padded["zero"]][0])
    html = get_html(client, f"/movies/{unrated}")
    assert "none (no training ratings)" in html and "not built" not in html
    assert "/clusters/-1" not in html
    rated = int(rec.movie_ids[~padded["zero"]][0])
    assert f'href="/clusters/{rec.catalogue.movie(rated)["cluster"]}"' in get_html(client, f"/movies/{rated}")
    found = get_html(client, "/search?q=Unrated")
    assert found.count('href="/movies/') >= 5 and "/clusters/-1" not in found
    assert found.count('<td class="wide">–</td>') >= 5  # the cluster column
    assert get_html(client, "/clusters").count('class="card cluster"') == 5
    assert client.get("/clusters/map.svg").status_code == 200


def test_model_page_puts_figures_first_and_says_how_lists_are_ordered(client, rec):
    html = get_html(client, "/model")
    assert html.index("Figures") < html.index("RMSE per")  # the long table comes after the key figures
    plain = rec.bundle.manifest["evaluation"]["ranking"]["0"]
    note = html[html.index('id="ranking-note"') :].split("</p>")[0]
    assert "ordered by relevance" in note and f"{plain['relevance']['ndcg']:.3f}" in note
    assert f"{plain['model']['ndcg']:.3f}" in note and "<td>relevance</td>" in html
    assert f"{plain['popularity']['ndcg']:.3f}" in html
    method = rec.bundle.manifest["config"]["method"]
    other = {"gibbs": "adam", "adam": "gibbs"}[method]
    hidden = {name for name, owner in one_method_settings().items() if owner == other}
    assert {"epochs", "lr"} <= hidden if method == "gibbs" else {"sweeps", "burn_in"} <= hidden
    assert all(f"<dt>{name.replace('_', ' ')}</dt>" not in html for name in hidden)
    assert "<dt>dim</dt>" in html  # a setting of both methods is shown


def test_a_movie_page_with_few_ratings_says_its_neighbours_are_uncertain(client, rec):
    counts = rec.bundle.movies.set_index("movie_id")["rating_count"]
    few = counts[(counts > 0) & (counts < 10)]
    many = counts[counts >= 10]
    if len(few):
        assert "its place among the others, and so this list, is uncertain" in get_html(
            client, f"/movies/{few.index[0]}"
        )
    html = get_html(client, f"/movies/{many.index[0]}?min_ratings=5")
    assert "is uncertain" not in html and 'name="min_ratings" value="5"' in html


def test_with_seen_movies_included_the_user_page_marks_the_rated_ones(client, rec):
    user = some_user(rec)
    rated = set(rec.catalogue.user_ratings(user)[0].tolist())
    html = get_html(client, f"/users/{user}?include_seen=1&k=100")
    recommendations = html[html.index('id="recommendations"') : html.index('id="rated"')]
    marks = {
        int(m): bool(s)
        for m, s in re.findall(
            r'<td class="title"><a href="/movies/(\d+)">[^<]*</a>( <span class="seen")?', recommendations
        )
    }
    assert marks and any(marks.values()) and not all(marks.values())
    assert all(marked == (movie in rated) for movie, marked in marks.items())
    assert 'class="seen"' not in get_html(
        client, f"/users/{user}?k=20"
    )  # seen movies excluded: nothing to mark
    own = dict(zip(*(a.tolist() for a in rec.catalogue.user_ratings(user))))
    shown = {
        int(m): float(r)
        for m, r in re.findall(
            r'<a href="/movies/(\d+)">[^<]*</a> <span class="seen"[^>]*>✓ rated ([\d.]+)</span>',
            recommendations,
        )
    }
    assert shown and all(rating == pytest.approx(own[movie], abs=0.05) for movie, rating in shown.items())


def test_clusters_are_named_not_numbered(client, rec):
    movie = some_movie(rec)
    label = next(
        c["label"] for c in rec.catalogue.clusters() if c["cluster"] == rec.catalogue.cluster_of(movie)
    )
    html = get_html(client, f"/movies/{movie}")
    assert f'<a href="/clusters/{rec.catalogue.cluster_of(movie)}">{label}</a>' in html.replace("&amp;", "&")
    similar = html.split('id="similar"')[1]
    first = int(rec.similar(movie, k=1)[0][0])
    assert f'<a href="/clusters/{rec.catalogue.cluster_of(first)}">' in similar


def test_the_home_page_has_something_to_browse(client, rec):
    html = get_html(client, "/")
    browse = html[html.index('id="browse"') : html.index("<h2>The model</h2>")]
    movies = rec.bundle.movies
    most = movies.sort_values(["rating_count", "movie_id"], ascending=[False, True]).movie_id.head(
        BROWSE_SHOWN
    )
    most_part, best_part = browse.split("<h2>Best rated</h2>")
    assert re.findall(r'href="/movies/(\d+)"', most_part) == [str(m) for m in most]
    floor = int(re.search(r"at least (\d+) ratings", best_part).group(1))
    best = [int(m) for m in re.findall(r'href="/movies/(\d+)"', best_part)]
    assert len(best) == min(BROWSE_SHOWN, int((movies.rating_count >= floor).sum()))
    means = movies.set_index("movie_id").loc[best]
    assert (means.rating_count >= floor).all() and means.mean_rating.is_monotonic_decreasing
    assert all(f'href="/clusters/{c["cluster"]}"' in browse for c in rec.catalogue.clusters())


@pytest.fixture(scope="module")
def films(films_bundle):
    return make_app(films_bundle).test_client()


def test_a_misspelled_title_is_taken_as_the_film_and_says_so(films):
    html = get_html(films, "/for-me?title=Starwarz&rating=5", 200)
    assert 'Starwarz → <a href="/movies/101">Star Wars (1977)</a>: 5' in html
    assert "/movies/102" not in html.split('id="recommendations"')[0]  # not "War, The"
    assert 'href="/movies/101"' not in html.split('id="recommendations"')[1]  # rated: left out


def test_an_ambiguous_title_keeps_the_form_and_offers_the_choices(films):
    html = get_html(films, "/for-me?title=godfather&rating=4&title=Toy+Story&rating=3", 400)
    assert "2 movies match &#39;godfather&#39;: which one?" in html and 'value="godfather"' in html
    choices = re.findall(r'<li><a href="([^"]+)">([^<]+)</a></li>', html.split('class="choices"')[1])
    assert [title for _, title in choices] == ["Godfather, The (1972)", "Godfather: Part II, The (1974)"]
    picked = get_html(films, html_unescape(choices[1][0]), 200)  # the link keeps the other rows
    assert "godfather: part ii, the (1974)" in picked.lower() and "Toy Story (1995)</a>: 3" in picked


def test_a_title_matching_nothing_is_not_replaced_by_another(films):
    html = get_html(films, "/for-me?title=Xyzzy+movie&rating=5", 400)
    assert "No title matches Xyzzy movie." in html and 'id="your-ratings"' not in html  # nothing rated
