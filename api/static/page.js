// citesearch search page: enhances the server-rendered HTML (which works without this script).
// Filters and paging without a reload, the answer on top (when POST /v1/answer exists), the read-key
// prompt, the admin strip, and the #chars=START-END highlight on article pages.
// Every piece of data goes into the page through textContent or an attribute: never innerHTML.
"use strict";

(function () {
  const KEY_STORE = "citesearch.readKey";
  const PAGE_SIZE = 10;
  const body = document.body;
  const $ = (id) => document.getElementById(id);

  // ---- the API, with the read key kept in this tab's sessionStorage ------------------------------
  class KeyNeeded extends Error {}

  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; }
  }

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    const key = storedKey();
    if (key) opts.headers["Authorization"] = "Bearer " + key;
    const resp = await fetch(path, opts);
    if (resp.status === 401) {
      // A refusal of an older key (a slow request sent before the reader entered a new one) must
      // not wipe the key entered since.
      if (storedKey() === key) askForKey(key ? "That key was refused; enter the read key again." : null);
      throw new KeyNeeded("a read key is needed");
    }
    return resp;
  }

  async function apiJson(path, options) {
    const resp = await api(path, options);
    const data = await resp.json().catch(() => null);
    if (!resp.ok) {
      const msg = data && data.error ? data.error.message : "HTTP " + resp.status;
      throw new Error(msg);
    }
    return data;
  }

  function askForKey(message) {
    try { sessionStorage.removeItem(KEY_STORE); } catch (e) { /* storage off: the prompt still works */ }
    const prompt = $("key-prompt");
    if (message) $("key-message").textContent = message;
    prompt.hidden = false;
    $("key").focus();
  }

  function setUpKeyPrompt(start) {
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("key").value.trim();
      if (!value) return;
      try { sessionStorage.setItem(KEY_STORE, value); } catch (e) { return; }
      $("key").value = "";
      $("key-prompt").hidden = true;
      start();
    });
    if (body.dataset.auth === "required") {
      if (storedKey()) { $("key-prompt").hidden = true; return true; }
      $("key").focus();
      return false;
    }
    return true;
  }

  // ---- small DOM helpers -------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  // Offsets from the API count code points (Python); JavaScript strings count UTF-16 units.
  function cutSpan(text, start, end) {
    const cps = Array.from(text);
    const s = Math.max(0, Math.min(start, cps.length));
    const e = Math.max(0, Math.min(end, cps.length));
    if (s >= e) return ["", "", text];
    return [cps.slice(0, s).join(""), cps.slice(s, e).join(""), cps.slice(e).join("")];
  }

  const LANG_TAG = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}$/;
  const langAttr = (tag) => (tag && LANG_TAG.test(tag) ? tag : null);
  function httpUrl(url) {
    if (!url) return null;
    try { const u = new URL(url, location.href); return /^https?:$/.test(u.protocol) ? u.href : null; }
    catch (e) { return null; }
  }
  // The article page with the cited passage [s, e) shaded and, when given, the answering sentence a = [as, ae) marked.
  const spanUrl = (id, s, e, a) => {
    const spans = "chars=" + s + "-" + e + (a ? "&answer=" + a[0] + "-" + a[1] : "");
    return "/articles/" + encodeURIComponent(id) + "?" + spans + "#" + spans;
  };

  // ---- the search page ---------------------------------------------------------------------------
  function formParams() {
    const form = $("search-form");
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (typeof value === "string" && value.trim()) params.append(name, value.trim());
    }
    return params;
  }

  function fillForm(params) {
    $("q").value = params.get("q") || "";
    for (const [id, name] of [["f-source", "source"], ["f-after", "published_after"], ["f-before", "published_before"]]) {
      $(id).value = params.get(name) || "";
    }
    ensureLanguageOption(params.get("language") || "");
    $("f-language").value = params.get("language") || "";
  }

  function ensureLanguageOption(code) {
    const select = $("f-language");
    if (!code || Array.from(select.options).some((o) => o.value === code)) return;
    select.append(el("option", { value: code }, code));
  }

  function renderResult(r) {
    const h = r.highlight;
    let [before, mark, after] = cutSpan(r.text, h.char_start - r.char_start, h.char_end - r.char_start);
    if (!mark && h.text && r.text.includes(h.text)) {
      const i = r.text.indexOf(h.text);
      [before, mark, after] = [r.text.slice(0, i), h.text, r.text.slice(i + h.text.length)];
    }
    const answers = Boolean(h.answers && mark);
    const href = spanUrl(r.article_id, r.char_start, r.char_end, answers ? [h.char_start, h.char_end] : null);
    const lang = langAttr(r.language);
    const meta = el("p", { class: "meta" },
      el("span", { class: "rank" }, "#" + r.rank), " ",
      el("span", { class: "badge", title: "language" }, r.language));
    if (r.source) meta.append(" ", el("span", { class: "source", dir: "auto" }, r.source));
    const date = (r.published_at || "").slice(0, 10);
    if (date) meta.append(" ", el("time", { datetime: date }, date));
    meta.append(" ", el("span", { class: "score" }, "score " + r.score.toFixed(3)));
    const original = r.url && httpUrl(r.url);
    if (original) meta.append(" ", el("a", { class: "original", href: original, rel: "noopener noreferrer" }, "original"));
    return el("li", { class: "result", "data-rank": r.rank },
      el("h3", { class: "result-title" }, el("span", { class: "cite" }, r.citation), " ",
        el("a", { class: "title-link", href: href, dir: "auto", lang: lang }, r.title || r.article_id)),
      meta,
      el("p", { class: "passage", dir: "auto", lang: lang }, before,
        !mark ? null : answers ? el("mark", { class: "answer", title: "answers the question" }, mark)
          : el("span", { class: "near", title: "the sentence nearest the question (not an answer)" }, mark),
        after),
      el("p", {}, el("a", { class: "span-link", href: href }, "Cited span " + r.citation + " in the article")));
  }

  function pageLink(params, offset, id, rel, label) {
    const p = new URLSearchParams(params);
    p.delete("offset");
    if (offset) p.set("offset", String(offset));
    return el("a", { id: id, rel: rel, href: "/?" + p.toString() }, label);
  }

  function renderResponse(data, params) {
    const offset = Number(params.get("offset") || 0);
    const n = data.results.length;
    $("status").replaceChildren(n + " result" + (n === 1 ? "" : "s") + (offset ? " from #" + (offset + 1) : "") + " in ",
      el("span", { id: "took", title: "took_ms " + data.took_ms }, Math.round(data.took_ms) + " ms"),
      data.query_language ? " · question language " + data.query_language : "");
    $("results").replaceChildren(...data.results.map(renderResult));
    const pager = $("pager");
    pager.replaceChildren();
    if (offset) pager.append(pageLink(params, Math.max(0, offset - PAGE_SIZE), "prev-page", "prev", "Previous page"));
    if (data.next_offset !== null && data.next_offset !== undefined) {
      pager.append(pageLink(params, data.next_offset, "next-page", "next", "Next page"));
    }
  }

  function showProblem(message) {
    $("status").replaceChildren(el("span", { class: "problem" }, message));
    $("results").replaceChildren();
    $("pager").replaceChildren();
  }

  function searchQuery(params) {
    const p = new URLSearchParams();
    p.set("q", params.get("q"));
    p.set("top_k", String(PAGE_SIZE));
    for (const name of ["language", "source", "published_after", "published_before", "offset"]) {
      if (params.get(name)) p.set(name, params.get(name));
    }
    return "/v1/search?" + p.toString();
  }

  let searchSeq = 0;
  async function runSearch(params) {
    const seq = ++searchSeq;
    hideAnswer();
    if (!(params.get("q") || "").trim()) { showProblem(""); return; }
    $("status").textContent = "Searching…";
    try {
      const data = await apiJson(searchQuery(params));
      if (seq !== searchSeq) return;
      renderResponse(data, params);
    } catch (err) {
      if (seq === searchSeq && !(err instanceof KeyNeeded)) showProblem(err.message);
      return;
    }
    loadAnswer(params, seq);
  }

  // ---- the answer (POST /v1/answer; absent on servers without it: then results only) --------------
  function hideAnswer() {
    $("answer").hidden = true;
    $("answer-text").replaceChildren();
    $("answer-citations").replaceChildren();
  }

  function citationHref(c) {
    return httpUrl(c.url) || spanUrl(c.article_id, c.char_start, c.char_end);
  }

  function renderAnswer(data) {
    const byLabel = new Map((data.citations || []).map((c) => [c.label, c]));
    const parts = String(data.answer || "").split(/(\[\d+\])/);
    const text = $("answer-text");
    text.replaceChildren();
    for (const part of parts) {
      const c = byLabel.get(part);
      text.append(c ? el("a", { class: "answer-label", href: citationHref(c) }, part) : part);
    }
    $("answer-citations").replaceChildren(...(data.citations || []).map((c) =>
      el("li", {}, c.label + " ", el("a", { href: citationHref(c), dir: "auto" }, c.title || c.article_id))));
    const how = data.mode === "generated" ? "Generated from the sources below" : "Quoted from the sources below";
    // A no-answer quotes nothing: no "quoted from" line under it.
    $("answer-mode").textContent = data.answered === false ? "" :
      how + (data.llm_fallback ? " (the language model did not answer in time)" : "");
    $("answer-mode").hidden = data.answered === false;
    $("answer").classList.toggle("unanswered", data.answered === false);
    $("answer").hidden = !data.answer;
  }

  async function loadAnswer(params, seq) {
    // The answer's [n] are the first page's results: shown above the first page only.
    if (Number(params.get("offset") || 0) > 0) return;
    const filters = {};
    if (params.get("language")) filters.language = [params.get("language")];
    if (params.get("source")) filters.source = [params.get("source")];
    for (const name of ["published_after", "published_before"]) {
      if (params.get(name)) filters[name] = params.get(name);
    }
    const request = { query: params.get("q"), top_k: 5, filters: filters };
    try {
      const resp = await api("/v1/answer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request),
      });
      if (!resp.ok) return; // 404 (no answers endpoint on this server) or any refusal: results only
      const data = await resp.json();
      if (seq === searchSeq && data && typeof data.answer === "string") renderAnswer(data);
    } catch (err) { /* results stand on their own */ }
  }

  function initSearchPage() {
    const form = $("search-form");
    const go = (params, push) => {
      if (push) history.pushState(null, "", "/?" + params.toString());
      document.title = (params.get("q") ? params.get("q") + " · " : "") + "citesearch";
      runSearch(params);
    };
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      go(formParams(), true);
    });
    $("pager").addEventListener("click", (ev) => {
      const link = ev.target.closest("a");
      if (!link) return;
      ev.preventDefault();
      const params = new URLSearchParams(new URL(link.href).search);
      go(params, true);
      $("main").focus();
    });
    window.addEventListener("popstate", () => {
      const params = new URLSearchParams(location.search);
      fillForm(params);
      runSearch(params);
    });
    const params = new URLSearchParams(location.search);
    const start = () => { refreshAdmin(); if (params.get("q")) runSearch(params); };
    if (setUpKeyPrompt(start)) {
      if (body.dataset.auth === "required") start();
      else { refreshAdmin(); if ((params.get("q") || "").trim()) loadAnswer(params, searchSeq); }
    }
  }

  // ---- the article page --------------------------------------------------------------------------
  // #chars=START-END[&answer=START-END] (or the same in the query string): the cited passage and
  // the sentence inside it that answers.
  function spanFromLocation() {
    const source = location.hash ? location.hash.slice(1) : location.search.slice(1);
    const p = new URLSearchParams(source);
    const pair = (v) => { const m = /^(\d+)-(\d+)$/.exec(v || ""); return m ? [Number(m[1]), Number(m[2])] : null; };
    const chars = pair(p.get("chars"));
    if (!chars) return null;
    const answer = pair(p.get("answer"));
    return { chars: chars, answer: answer && chars[0] <= answer[0] && answer[0] < answer[1] && answer[1] <= chars[1] ? answer : null };
  }

  function highlight(span) {
    const box = $("article-text");
    const text = box.textContent;
    const [before, cited, after] = span ? cutSpan(text, span.chars[0], span.chars[1]) : ["", "", text];
    let inner = [cited];
    if (cited && span.answer) {
      const [lead, mark, tail] = cutSpan(cited, span.answer[0] - span.chars[0], span.answer[1] - span.chars[0]);
      inner = mark ? [lead, el("mark", { class: "answer" }, mark), tail] : [cited];
    }
    box.replaceChildren(before, ...(cited ? [el("span", { id: "cited", class: "cited", tabindex: "-1" }, ...inner)] : []), after);
    const note = $("span-note");
    note.hidden = !cited;
    if (cited) note.firstChild.textContent = "The cited passage is shaded" + (inner.length > 1 ? " and the sentence that answers is marked" : "") + ". ";
    if (cited) {
      const cited = $("cited");
      cited.scrollIntoView({ block: "center" });
      cited.focus({ preventScroll: true });
    }
  }

  async function loadArticle() {
    const id = $("article").dataset.articleId;
    let a;
    try {
      a = await apiJson("/v1/articles/" + encodeURIComponent(id));
    } catch (err) {
      if (!(err instanceof KeyNeeded)) $("article-title").textContent = err.message;
      return;
    }
    const lang = langAttr(a.language);
    if (lang) $("article").setAttribute("lang", lang);
    $("article-title").textContent = a.title || a.id;
    document.title = (a.title || a.id) + " · citesearch";
    const meta = $("article-meta");
    meta.replaceChildren(el("span", { class: "badge", title: "language" }, a.language || "?"));
    if (a.source) meta.append(" ", el("span", { class: "source", dir: "auto" }, a.source));
    const date = (a.published_at || "").slice(0, 10);
    if (date) meta.append(" ", el("time", { datetime: date }, date));
    meta.append(" ", el("span", { class: "id" }, "id " + a.id));
    const original = a.url && httpUrl(a.url);
    if (original) meta.append(" ", el("a", { class: "original", href: original, rel: "noopener noreferrer" }, "original"));
    $("article-text").textContent = a.text;
    highlight(spanFromLocation());
  }

  function initArticlePage() {
    window.addEventListener("hashchange", () => highlight(spanFromLocation()));
    const start = () => { refreshAdmin(); loadArticle(); };
    if (setUpKeyPrompt(start)) {
      if (body.dataset.auth === "required") start();
      else { refreshAdmin(); if (spanFromLocation()) highlight(spanFromLocation()); }
    }
  }

  // ---- the admin strip: corpus figures, and a reindex's progress while one runs ------------------
  let adminTimer = null;
  async function refreshAdmin() {
    clearTimeout(adminTimer);
    let data;
    try { data = await apiJson("/ui/status"); } catch (err) { return; }
    const s = data.stats;
    if (s) {
      const langs = Object.keys(s.languages).sort();
      $("admin-stats").textContent = s.articles + " articles · " + s.passages + " passages · languages: " +
        (langs.join(", ") || "none") + " · model " + s.model.split("/").pop() + " (" + s.dim + "d, " +
        s.index_kind + ") · generation " + s.generation;
      if ($("f-language")) langs.forEach(ensureLanguageOption);
    }
    const job = data.job;
    $("admin-job").hidden = !job;
    if (job) {
      $("job-label").textContent = job.kind + " " + job.status;
      $("job-progress").value = job.progress;
      $("job-message").textContent = Math.round(job.progress * 100) + "% " + (job.message || "");
    }
    if (!document.hidden) adminTimer = setTimeout(refreshAdmin, job ? 1000 : 10000);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshAdmin(); });

  // ---- the "still loading" page: reload once the model and the index are ready -----------------------
  async function waitUntilReady() {
    try {
      const resp = await fetch("/readyz");
      if (resp.ok) { location.reload(); return; }
    } catch (err) { /* the server may be restarting: keep polling */ }
    setTimeout(waitUntilReady, 1000);
  }

  if (body.dataset.page === "search") initSearchPage();
  else if (body.dataset.page === "article") initArticlePage();
  else if (body.dataset.page === "loading") setTimeout(waitUntilReady, 1000);
})();
