// Title suggestions as you type: asks /api/v1/movies?q= and lists the answers as
// links. Every piece of data goes in with textContent, never innerHTML.
(function () {
  "use strict";
  var input = document.getElementById("q");
  var list = document.getElementById("suggestions");
  if (!input || !list || !window.fetch) return;
  var endpoint = input.getAttribute("data-suggest");
  // The movie URL for id 0, e.g. "/movies/0": the id is swapped in per answer.
  var movieUrl = input.getAttribute("data-movie-url").replace(/0$/, "");
  var timer = null, controller = null, latest = "";

  function clear() {
    while (list.firstChild) list.removeChild(list.firstChild);
    list.hidden = true;
  }

  function show(items) {
    clear();
    items.forEach(function (item) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = movieUrl + encodeURIComponent(item.movie_id);
      a.textContent = item.title;
      a.setAttribute("role", "option");
      li.appendChild(a);
      list.appendChild(li);
    });
    list.hidden = items.length === 0;
  }

  function ask(query) {
    if (controller) controller.abort();
    controller = window.AbortController ? new AbortController() : null;
    var url = endpoint + "?limit=8&q=" + encodeURIComponent(query);
    fetch(url, { signal: controller && controller.signal, headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { items: [] }; })
      .then(function (body) { if (query === latest) show(body.items || []); })
      .catch(function () { /* aborted or offline: keep the form usable */ });
  }

  input.addEventListener("input", function () {
    latest = input.value.trim();
    clearTimeout(timer);
    if (!latest) { clear(); return; }
    timer = setTimeout(function () { ask(latest); }, 120);
  });

  // Arrow down from the box moves into the list; Escape closes it.
  input.addEventListener("keydown", function (e) {
    if (e.key === "ArrowDown" && list.firstChild) { e.preventDefault(); list.firstChild.firstChild.focus(); }
    if (e.key === "Escape") clear();
  });
  // A click or tap anywhere outside the box and the list closes it.
  document.addEventListener("click", function (e) {
    if (!list.hidden && e.target !== input && !list.contains(e.target)) clear();
  });
  list.addEventListener("keydown", function (e) {
    var li = document.activeElement && document.activeElement.parentNode;
    if (!li || li.parentNode !== list) return;
    if (e.key === "ArrowDown" && li.nextSibling) { e.preventDefault(); li.nextSibling.firstChild.focus(); }
    if (e.key === "ArrowUp") { e.preventDefault(); (li.previousSibling ? li.previousSibling.firstChild : input).focus(); }
    if (e.key === "Escape") { clear(); input.focus(); }
  });
})();
