(function () {
  'use strict';
  // Data layout: docs/report.md ("Data"). User text is only ever set through textContent,
  // title or value, never parsed as HTML.
  var D = JSON.parse(document.getElementById('iw-data').textContent);
  var T = D.tags, V = D.variants, I = D.images;
  var CLS = ['tp', 'fp', 'fn', 'pr'];
  var CLS_NAME = ['true positive', 'false positive', 'missed', 'predicted'];
  var PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  var thumbs = null;
  var state = {
    tag: '', file: '', disagree: false, errors: false, failed: false, sort: 'path', side: false, page: 0, size: null,
    shown: V.map(function (_, k) { return D.ranking.indexOf(k) < 4; })
  };
  var matches = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function $(id) { return document.getElementById(id); }
  function shownOrder() { return D.ranking.filter(function (k) { return state.shown[k]; }); }
  function fmt(n) { return n.toLocaleString('en-US'); }

  // predicted tag ids of image i under variant k (null: no result)
  function predicted(i, k) {
    var r = I[i].v[k];
    if (!r) return null;
    var out = [];
    for (var j = 0; j < r.length; j += 3) if (r[j + 2] !== 2) out.push(r[j]);
    return out;
  }
  function counts(i, k) {
    var r = I[i].v[k], c = [0, 0, 0, 0];
    if (!r) return null;
    for (var j = 0; j < r.length; j += 3) c[r[j + 2]]++;
    return c;
  }
  function disagreement(i, ks) {
    var base = null, d = 0;
    for (var n = 0; n < ks.length; n++) {
      var p = predicted(i, ks[n]);
      if (!p) continue;
      if (base === null) { base = new Set(p); continue; }
      var s = new Set(p);
      p.forEach(function (t) { if (!base.has(t)) d++; });
      base.forEach(function (t) { if (!s.has(t)) d++; });
    }
    return d;
  }
  function tagSet(q) {
    q = q.trim().toLowerCase();
    if (!q) return null;
    var exact = new Set(), part = new Set();
    for (var t = 0; t < T.length; t++) {
      var name = T[t].toLowerCase();
      if (name === q) exact.add(t); else if (name.indexOf(q) >= 0) part.add(t);
    }
    return exact.size ? exact : part;
  }
  function imageHasTag(i, ks, set) {
    var img = I[i];
    if (img.gt) for (var a = 0; a < img.gt.length; a++) if (set.has(img.gt[a])) return true;
    for (var n = 0; n < ks.length; n++) {
      var r = img.v[ks[n]];
      if (!r) continue;
      for (var j = 0; j < r.length; j += 3) if (set.has(r[j])) return true;
    }
    return false;
  }
  function f1Of(i, k) {
    var c = counts(i, k);
    if (!c || !I[i].gt) return null;
    var den = 2 * c[0] + c[1] + c[2];
    return den === 0 ? 1 : 2 * c[0] / den;
  }

  function filter() {
    var ks = shownOrder();
    var set = tagSet(state.tag);
    var file = state.file.trim().toLowerCase();
    var out = [];
    for (var i = 0; i < I.length; i++) {
      if (file && I[i].p.toLowerCase().indexOf(file) < 0) continue;
      if (state.failed && !(I[i].f && I[i].f.length)) continue;
      if (set && !imageHasTag(i, ks, set)) continue;
      if (state.errors) {
        var err = false;
        for (var n = 0; n < ks.length && !err; n++) {
          var c = counts(i, ks[n]);
          if (c && (c[1] || c[2])) err = true;
        }
        if (!err) continue;
      }
      if (state.disagree && disagreement(i, ks) === 0) continue;
      out.push(i);
    }
    if (state.sort === 'f1' && ks.length) {
      var k0 = ks[0];
      var key = out.map(function (i) { var f = f1Of(i, k0); return f === null ? 2 : f; });
      var idx = out.map(function (_, n) { return n; });
      idx.sort(function (a, b) { return key[a] - key[b] || a - b; });
      out = idx.map(function (n) { return out[n]; });
    } else if (state.sort === 'disagree') {
      var dk = out.map(function (i) { return disagreement(i, ks); });
      var ix = out.map(function (_, n) { return n; });
      ix.sort(function (a, b) { return dk[b] - dk[a] || a - b; });
      out = ix.map(function (n) { return out[n]; });
    }
    matches = out;
  }

  function thumbFor(i, box, ks) {
    var src = null;
    if (D.thumbs === 'folder') src = I[i].t || null;
    else if (D.thumbs === 'embed' && thumbs && thumbs[i]) src = 'data:image/jpeg;base64,' + thumbs[i];
    box.textContent = '';
    if (src) {
      var img = el('img');
      img.loading = 'lazy';
      img.decoding = 'async';
      img.alt = I[i].p;
      img.src = src;
      var regions = (I[i].r || []).filter(function (r) { return !ks || ks.indexOf(r[0]) >= 0; });
      if (regions.length) {
        // face boxes: [variant, left, top, width, height (fractions), score x 1000, label]
        var frame = el('span', 'frame');
        frame.appendChild(img);
        regions.forEach(function (r) {
          var b = el('span', 'face' + (r[6].indexOf('skipped') === 0 ? ' skipped' : ''));
          b.style.left = (100 * r[1]).toFixed(2) + '%';
          b.style.top = (100 * r[2]).toFixed(2) + '%';
          b.style.width = (100 * r[3]).toFixed(2) + '%';
          b.style.height = (100 * r[4]).toFixed(2) + '%';
          b.style.borderColor = PALETTE[r[0] % PALETTE.length];
          b.title = V[r[0]].key + ': ' + (r[6] ? r[6] + ', ' : '') + 'score ' + (r[5] / 1000).toFixed(3);
          if (r[6] && r[6].indexOf('skipped') !== 0) b.appendChild(el('span', 'who', r[6]));
          frame.appendChild(b);
        });
        box.appendChild(frame);
      } else {
        box.appendChild(img);
      }
    } else {
      box.textContent = D.thumbs === 'embed' && !thumbs ? '…' : 'no thumbnail';
    }
  }

  // one generated text: [repeat, text, [[judge, verdict, score or null], ...]]
  function textBlock(x, numbered) {
    var box = el('div', 'gen');
    var t = el('div', 'gentext', (numbered ? '#' + x[0] + ' ' : '') + (x[1] || ''));
    if (!x[1]) t.classList.add('none');
    box.appendChild(t);
    x[2].forEach(function (j) {
      var valid = j[2] !== null;
      var v = el('span', 'verdict' + (valid ? '' : ' invalid'),
        j[0] + ': ' + (valid ? (j[1] && j[1] !== j[0] ? j[1] + ' ' : '') + j[2].toFixed(2) : 'invalid'));
      if (valid) v.style.setProperty('--s', j[2].toFixed(3));
      v.title = valid ? 'score ' + j[2] : 'the verdict did not parse' + (j[1] ? ' (' + j[1] + ')' : '');
      box.appendChild(v);
    });
    return box;
  }

  function card(i, ks) {
    var img = I[i];
    var c = el('div', 'card');
    c.dataset.i = i;
    var box = el('div', 'thumb');
    box.dataset.ks = ks.join(',');
    thumbFor(i, box, ks);
    c.appendChild(box);
    var body = el('div', 'body');
    var name = el('div', 'name', img.p);
    name.title = img.p + '\nblake3 ' + img.h;
    var sub = img.gt ? (img.gt.length + ' ground-truth tags') : 'no ground truth';
    name.appendChild(el('span', 'sub', sub));
    body.appendChild(name);
    var rows = el('div', 'vrows' + (state.side ? ' side' : ''));
    rows.style.setProperty('--cols', String(Math.max(1, ks.length)));
    var sets = state.side ? ks.map(function (k) { return new Set(predicted(i, k) || []); }) : null;
    var hit = tagSet(state.tag);
    ks.forEach(function (k, n) {
      var row = el('div', 'vrow');
      var vn = el('span', 'vname');
      var chip = el('span', 'chip');
      chip.style.background = PALETTE[k % PALETTE.length];
      vn.appendChild(chip);
      vn.appendChild(document.createTextNode(V[k].key));
      row.appendChild(vn);
      var r = img.v[k];
      var texts = img.x && img.x[k];
      if (!r && !texts) {
        row.appendChild(el('span', 'none', 'no result'));
      } else if (r && !r.length && !texts) {
        row.appendChild(el('span', 'none', 'no tags'));
      }
      for (var j = 0; r && j < r.length; j += 3) {
        var t = r[j], s = r[j + 1] / 1000, cl = r[j + 2];
        var cls = 'tag ' + CLS[cl];
        if (sets && cl !== 2) {
          var elsewhere = false;
          for (var m = 0; m < sets.length; m++) if (m !== n && sets[m].has(t)) elsewhere = true;
          if (!elsewhere && sets.length > 1) cls += ' only';
        }
        if (hit && hit.has(t)) cls += ' hit';
        var span = el('span', cls, T[t]);
        span.style.setProperty('--s', s.toFixed(3));
        span.title = CLS_NAME[cl] + (cl === 2 && r[j + 1] === 0 ? ' (no stored score)' : ', score ' + s.toFixed(3));
        row.appendChild(span);
      }
      if (texts) texts.forEach(function (x) { row.appendChild(textBlock(x, texts.length > 1)); });
      rows.appendChild(row);
    });
    if (!ks.length) rows.appendChild(el('span', 'none', 'no variant shown'));
    body.appendChild(rows);
    if (img.f) {
      img.f.forEach(function (f) {
        var who = f[0] >= 0 ? V[f[0]].key : 'input';
        body.appendChild(el('div', 'failure', 'failed (' + who + ', ' + f[1] + '): ' + f[2]));
      });
    }
    if (img.m) {
      var d = el('details', 'meta');
      d.appendChild(el('summary', null, img.m.prompt ? 'prompt and generation settings' : 'file and generation settings'));
      if (img.m.prompt) d.appendChild(el('div', 'prompt', img.m.prompt));
      if (img.m.negative) d.appendChild(el('div', 'prompt neg', img.m.negative));
      if (img.m.settings.length) {
        var tb = el('table');
        img.m.settings.forEach(function (kv) {
          var tr = el('tr');
          tr.appendChild(el('td', null, kv[0]));
          tr.appendChild(el('td', null, kv[1]));
          tb.appendChild(tr);
        });
        d.appendChild(tb);
      }
      body.appendChild(d);
    }
    c.appendChild(body);
    return c;
  }

  function pager(box, pages) {
    box.textContent = '';
    if (pages <= 1) return;
    var prev = el('button', null, '‹ previous');
    prev.disabled = state.page === 0;
    prev.onclick = function () { go(state.page - 1); };
    var next = el('button', null, 'next ›');
    next.disabled = state.page >= pages - 1;
    next.onclick = function () { go(state.page + 1); };
    var label = el('span', null, 'page ');
    var input = el('input');
    input.type = 'number'; input.min = 1; input.max = pages; input.value = state.page + 1;
    input.style.width = '5em';
    input.onchange = function () { go(Math.max(0, Math.min(pages - 1, (parseInt(input.value, 10) || 1) - 1))); };
    box.appendChild(prev); box.appendChild(label); box.appendChild(input);
    box.appendChild(el('span', null, ' of ' + pages)); box.appendChild(next);
  }
  function go(p) { state.page = p; render(); writeHash(); $('images').scrollIntoView(); }

  function render() {
    if (!matches) filter();
    var ks = shownOrder();
    var size = D.page_size, pages = Math.max(1, Math.ceil(matches.length / size));
    if (state.page >= pages) state.page = pages - 1;
    var from = state.page * size, to = Math.min(matches.length, from + size);
    var grid = $('grid');
    var frag = document.createDocumentFragment();
    for (var n = from; n < to; n++) frag.appendChild(card(matches[n], ks));
    grid.textContent = '';
    grid.appendChild(frag);
    $('grid-status').textContent = matches.length
      ? 'Showing ' + fmt(from + 1) + '–' + fmt(to) + ' of ' + fmt(matches.length) + ' images' + (matches.length !== I.length ? ' (of ' + fmt(I.length) + ')' : '') + '.'
      : 'No image matches the filters (of ' + fmt(I.length) + ').';
    pager($('pager-top'), pages);
    pager($('pager-bottom'), pages);
  }
  function refilter() { matches = null; state.page = 0; render(); writeHash(); }

  // The grid's state lives in the URL (#images?tag=cat&errors=1&...): a view can be
  // bookmarked or shared, and reloading keeps it.
  var SIZES = ['96', '160', '224'];
  function readHash() {
    var h = location.hash.replace(/^#/, '');
    var q = h.indexOf('?');
    if (q < 0) return;
    var ps = new URLSearchParams(h.slice(q + 1));
    if (ps.has('tag')) state.tag = ps.get('tag');
    if (ps.has('file')) state.file = ps.get('file');
    ['disagree', 'errors', 'failed', 'side'].forEach(function (k) { if (ps.get(k) === '1') state[k] = true; });
    if (['path', 'f1', 'disagree'].indexOf(ps.get('sort')) >= 0) state.sort = ps.get('sort');
    if (ps.has('variants')) {
      var keys = ps.get('variants').split(',');
      state.shown = V.map(function (v) { return keys.indexOf(v.key) >= 0; });
    }
    var page = parseInt(ps.get('page'), 10);
    if (page > 0) state.page = page - 1;
    if (SIZES.indexOf(ps.get('size')) >= 0) state.size = ps.get('size');
  }
  function writeHash() {
    var ps = new URLSearchParams();
    if (state.tag) ps.set('tag', state.tag);
    if (state.file) ps.set('file', state.file);
    ['disagree', 'errors', 'failed', 'side'].forEach(function (k) { if (state[k]) ps.set(k, '1'); });
    if (state.sort !== 'path') ps.set('sort', state.sort);
    ps.set('variants', D.ranking.filter(function (k) { return state.shown[k]; }).map(function (k) { return V[k].key; }).join(','));
    if (state.page) ps.set('page', String(state.page + 1));
    if (state.size) ps.set('size', state.size);
    try { history.replaceState(null, '', '#images?' + ps.toString()); } catch (e) { /* file:// in some browsers */ }
  }

  function controls() {
    var dl = $('tag-list');
    var opts = document.createDocumentFragment();
    var lim = Math.min(T.length, 5000);
    for (var t = 0; t < lim; t++) { var o = el('option'); o.value = T[t]; opts.appendChild(o); }
    dl.appendChild(opts);
    var deb = null;
    function later(f) { clearTimeout(deb); deb = setTimeout(f, 150); }
    $('f-tag').addEventListener('input', function (e) { state.tag = e.target.value; later(refilter); });
    $('f-file').addEventListener('input', function (e) { state.file = e.target.value; later(refilter); });
    $('f-disagree').addEventListener('change', function (e) { state.disagree = e.target.checked; refilter(); });
    $('f-errors').addEventListener('change', function (e) { state.errors = e.target.checked; refilter(); });
    $('f-failed').addEventListener('change', function (e) { state.failed = e.target.checked; refilter(); });
    $('f-sort').addEventListener('change', function (e) { state.sort = e.target.value; refilter(); });
    $('f-side').addEventListener('change', function (e) { state.side = e.target.checked; render(); writeHash(); });
    $('f-tag').value = state.tag; $('f-file').value = state.file;
    $('f-disagree').checked = state.disagree; $('f-errors').checked = state.errors;
    $('f-failed').checked = state.failed; $('f-side').checked = state.side; $('f-sort').value = state.sort;
    var sizes = document.querySelectorAll('[data-size]');
    Array.prototype.forEach.call(sizes, function (b) {
      function pick() {
        Array.prototype.forEach.call(sizes, function (x) { x.classList.remove('on'); });
        b.classList.add('on');
        document.documentElement.style.setProperty('--thumb', b.dataset.size + 'px');
      }
      b.addEventListener('click', function () { state.size = b.dataset.size; pick(); writeHash(); });
      if (state.size === b.dataset.size) pick();
    });
    var vt = $('variant-toggles');
    vt.appendChild(el('span', null, 'variants: '));
    D.ranking.forEach(function (k) {
      var lab = el('label', 'vt-toggle');
      var cb = el('input');
      cb.type = 'checkbox'; cb.checked = state.shown[k];
      cb.addEventListener('change', function () { state.shown[k] = cb.checked; refilter(); });
      var chip = el('span', 'chip');
      chip.style.background = PALETTE[k % PALETTE.length];
      lab.appendChild(cb); lab.appendChild(chip); lab.appendChild(document.createTextNode(V[k].key));
      vt.appendChild(lab);
    });
  }

  // ---- diff view ----
  function diffView() {
    var a = $('d-a'), b = $('d-b');
    D.ranking.forEach(function (k) {
      var o1 = el('option', null, V[k].key); o1.value = k; a.appendChild(o1);
      var o2 = el('option', null, V[k].key); o2.value = k; b.appendChild(o2);
    });
    if (!V.length) return;
    a.value = D.ranking[0];
    b.value = D.ranking.length > 1 ? D.ranking[1] : D.ranking[0];
    a.addEventListener('change', diff); b.addEventListener('change', diff);
    diff();
  }
  function diff() {
    var ka = +$('d-a').value, kb = +$('d-b').value;
    var out = $('diff-out');
    out.textContent = '';
    var per = {}, rows = [], shared = 0, changed = 0, gainedN = 0, lostN = 0;
    function tagRow(t) {
      return per[t] || (per[t] = { t: t, g: 0, l: 0, tpa: 0, fpa: 0, fna: 0, tpb: 0, fpb: 0, fnb: 0 });
    }
    for (var i = 0; i < I.length; i++) {
      var ra = I[i].v[ka], rb = I[i].v[kb];
      if (!ra || !rb) continue;
      shared++;
      var pa = new Set(predicted(i, ka)), pb = new Set(predicted(i, kb));
      var gained = [], lost = [];
      pb.forEach(function (t) { if (!pa.has(t)) gained.push(t); });
      pa.forEach(function (t) { if (!pb.has(t)) lost.push(t); });
      gained.forEach(function (t) { tagRow(t).g++; });
      lost.forEach(function (t) { tagRow(t).l++; });
      gainedN += gained.length; lostN += lost.length;
      if (I[i].gt) {
        var r, j;
        for (r = ra, j = 0; j < r.length; j += 3) { var x = tagRow(r[j]); if (r[j + 2] === 0) x.tpa++; else if (r[j + 2] === 1) x.fpa++; else if (r[j + 2] === 2) x.fna++; }
        for (r = rb, j = 0; j < r.length; j += 3) { var y = tagRow(r[j]); if (r[j + 2] === 0) y.tpb++; else if (r[j + 2] === 1) y.fpb++; else if (r[j + 2] === 2) y.fnb++; }
      }
      if (gained.length || lost.length) {
        changed++;
        rows.push({ i: i, g: gained, l: lost, fa: f1Of(i, ka), fb: f1Of(i, kb) });
      }
    }
    out.appendChild(el('p', 'diff-summary',
      V[kb].key + ' vs ' + V[ka].key + ': ' + fmt(shared) + ' images both scored, ' + fmt(changed) + ' changed; ' +
      fmt(gainedN) + ' tags gained, ' + fmt(lostN) + ' lost.'));
    var tags = Object.keys(per).map(function (t) { return per[t]; }).filter(function (x) { return x.g || x.l; });
    tags.sort(function (x, y) { return (y.g + y.l) - (x.g + x.l) || (T[x.t] < T[y.t] ? -1 : 1); });
    function ratio(a, b) { return a + b ? a / (a + b) : null; }
    function num(x) { return x === null ? '–' : x.toFixed(3); }
    function delta(a, b) { if (a === null || b === null) return '–'; var d = b - a; return (d >= 0 ? '+' : '') + d.toFixed(3); }
    var tt = el('table', 'sortable diff-tags');
    var head = el('tr');
    ['tag', 'gained', 'lost', 'P A', 'P B', 'ΔP', 'R A', 'R B', 'ΔR', 'support'].forEach(function (h, n) {
      var th = el('th', null, h); if (n) th.dataset.type = 'num'; head.appendChild(th);
    });
    var thead = el('thead'); thead.appendChild(head); tt.appendChild(thead);
    var tb = el('tbody');
    tags.slice(0, 200).forEach(function (x) {
      var pa = ratio(x.tpa, x.fpa), pb = ratio(x.tpb, x.fpb), ra = ratio(x.tpa, x.fna), rb = ratio(x.tpb, x.fnb);
      var tr = el('tr');
      [T[x.t], x.g, x.l, num(pa), num(pb), delta(pa, pb), num(ra), num(rb), delta(ra, rb), x.tpb + x.fnb].forEach(function (v, n) {
        var td = el('td', n === 1 ? 'gain' : n === 2 ? 'lost' : null, v); tr.appendChild(td);
      });
      tb.appendChild(tr);
    });
    tt.appendChild(tb);
    out.appendChild(el('h3', null, 'Tags that changed (' + fmt(tags.length) + (tags.length > 200 ? ', first 200' : '') + ')'));
    out.appendChild(tt);
    rows.sort(function (x, y) { return (y.g.length + y.l.length) - (x.g.length + x.l.length) || x.i - y.i; });
    var it = el('table', 'diff-images');
    var ih = el('tr');
    ['image', 'gained', 'lost', 'F1 A', 'F1 B'].forEach(function (h) { ih.appendChild(el('th', null, h)); });
    var ithead = el('thead'); ithead.appendChild(ih); it.appendChild(ithead);
    var ib = el('tbody');
    rows.slice(0, 50).forEach(function (x) {
      var tr = el('tr', 'click');
      tr.appendChild(el('td', null, I[x.i].p));
      tr.appendChild(el('td', 'gain', x.g.map(function (t) { return T[t]; }).join(', ')));
      tr.appendChild(el('td', 'lost', x.l.map(function (t) { return T[t]; }).join(', ')));
      tr.appendChild(el('td', null, num(x.fa)));
      tr.appendChild(el('td', null, num(x.fb)));
      tr.addEventListener('click', function () {
        $('f-file').value = I[x.i].p; state.file = I[x.i].p;
        state.shown = V.map(function (_, k) { return k === ka || k === kb; });
        var boxes = document.querySelectorAll('#variant-toggles input');
        Array.prototype.forEach.call(boxes, function (cb, n) { cb.checked = state.shown[D.ranking[n]]; });
        refilter(); $('images').scrollIntoView();
      });
      ib.appendChild(tr);
    });
    it.appendChild(ib);
    out.appendChild(el('h3', null, 'Images that changed most (' + fmt(rows.length) + (rows.length > 50 ? ', first 50' : '') + ')'));
    out.appendChild(it);
    sortable(tt);
  }

  // ---- sortable tables ----
  function sortable(table) {
    var ths = table.querySelectorAll('thead th');
    Array.prototype.forEach.call(ths, function (th, col) {
      th.addEventListener('click', function () {
        var asc = !th.classList.contains('asc');
        Array.prototype.forEach.call(ths, function (x) { x.classList.remove('asc', 'desc'); });
        th.classList.add(asc ? 'asc' : 'desc');
        var num = th.dataset.type === 'num';
        var body = table.tBodies[0];
        var rs = Array.prototype.slice.call(body.rows);
        function val(r) {
          var c = r.cells[col]; if (!c) return num ? -Infinity : '';
          var v = c.dataset.v !== undefined ? c.dataset.v : c.textContent;
          if (!num) return v;
          var f = parseFloat(String(v).replace(/[^0-9eE+\-.]/g, ''));
          return isNaN(f) ? -Infinity : f;
        }
        rs.sort(function (a, b) {
          var x = val(a), y = val(b);
          var o = x < y ? -1 : x > y ? 1 : 0;
          return asc ? o : -o;
        });
        rs.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  // duplicate groups: thumbnails side by side, the suggested keeper marked
  function dupesView() {
    var sec = $('dupes'), box = $('dupes-list');
    if (!sec || !box) return;
    if (!D.dupes) { sec.style.display = 'none'; return; }
    var groups = D.dupes;
    var copies = groups.reduce(function (n, g) { return n + g.i.length - 1; }, 0);
    $('dupes-note').textContent = groups.length + ' group(s), ' + copies + ' image(s) beyond the keepers (' + D.dupes_by +
      '). The keeper has the most pixels, then a lossless format. `iw-lab dupes --script` writes the moves; nothing is deleted.';
    if (!groups.length) { box.textContent = 'No duplicates among the ' + I.length + ' images.'; return; }
    groups.forEach(function (g) {
      var row = el('div', 'dupe-group');
      row.appendChild(el('div', 'dupe-head', g.x ? 'exact duplicates (same bytes)' : 'near duplicates (up to ' + g.d + ' bits apart)'));
      var strip = el('div', 'dupe-strip');
      g.i.forEach(function (i) {
        var c = el('div', 'dupe' + (i === g.k ? ' keeper' : ''));
        c.dataset.i = i;
        var t = el('div', 'thumb');
        thumbFor(i, t, []);
        c.appendChild(t);
        var n = el('div', 'name', (i === g.k ? 'keep · ' : '') + I[i].p);
        n.title = I[i].p;
        c.appendChild(n);
        strip.appendChild(c);
      });
      row.appendChild(strip);
      box.appendChild(row);
    });
  }

  window.iwThumbsReady = function () {
    var node = $('iw-thumbs');
    if (!node) return;
    thumbs = JSON.parse(node.textContent);
    Array.prototype.forEach.call(document.querySelectorAll('#dupes-list .dupe'), function (c) { thumbFor(+c.dataset.i, c.querySelector('.thumb'), []); });
    var boxes = document.querySelectorAll('#grid .card');
    Array.prototype.forEach.call(boxes, function (c) {
      var t = c.querySelector('.thumb');
      thumbFor(+c.dataset.i, t, t.dataset.ks ? t.dataset.ks.split(',').map(Number) : []);
    });
    document.documentElement.dataset.thumbsMs = performance.now().toFixed(1);
  };

  readHash();
  controls();
  render();
  document.body.offsetHeight; // force layout: the first render is complete
  document.documentElement.dataset.renderMs = performance.now().toFixed(1);
  diffView();
  dupesView();
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (t) { if (!t.classList.contains('diff-tags')) sortable(t); });
  document.documentElement.dataset.ready = '1';
})();
