// tollgate dashboard: plain JS over the reports API (docs/api.md). No build step.
//
// The URL is the state: the tab, the date range, the bot switch, every filter and the inputs
// of the funnel, attribution, events and SQL views live in the query string, so any view can
// be shared or reloaded as it is. Data is only ever put into the page with textContent and
// attributes, never as HTML.
'use strict';
(() => {
  // The reports and dimensions, from the server's one list (src/reports/defs.rs), embedded in
  // the page as it is served; GET /api/reports answers the same.
  const CATALOG = JSON.parse(document.getElementById('catalog').textContent);
  const DIMENSIONS = CATALOG.dimensions.map((d) => d.name);
  // Where a session came from: the session-scoped dimensions.
  const SOURCES = CATALOG.dimensions.filter((d) => d.scope === 'session').map((d) => d.name);
  const TITLES = {
    channel: 'Channels', referrer_host: 'Referrers', utm_source: 'Sources (utm_source)',
    utm_medium: 'Mediums', utm_campaign: 'Campaigns', utm_term: 'Terms', utm_content: 'Content',
    click_id_type: 'Ad click ids', device_type: 'Devices', browser: 'Browsers', os: 'Operating systems',
    country: 'Countries',
  };
  const NONE = CATALOG.none;
  // A tab for each report, in the catalog's order, then the SQL console.
  document.getElementById('tabs').append(...CATALOG.reports.map((r) => el('button', { 'data-tab': r.name, text: r.title, title: r.doc })),
    el('button', { 'data-tab': 'sql', text: 'SQL' }));
  const $ = (sel) => document.querySelector(sel);
  const view = $('#view');
  let state = new URLSearchParams(location.search);
  let busy = 0;
  let generation = 0; // bumps on every render, so late answers of an old view are dropped
  let realtimeTimer = null;

  // ---- small helpers ------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else if (k in e) e[k] = v;
      else e.setAttribute(k, v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const svg = (tag, attrs) => {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };
  function setBusy(delta) {
    busy += delta;
    document.body.dataset.busy = busy > 0 ? '1' : '0';
  }
  const int = (v) => (v === null || v === undefined ? '–' : Number(v).toLocaleString('en-US'));
  const pct = (v) => (v === null || v === undefined ? '–' : (v * 100).toFixed(1) + ' %');
  function duration(s) {
    if (s === null || s === undefined) return '–';
    s = Math.round(s);
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }
  // Why a column's numbers are estimates (docs/api.md).
  function whyEstimated(col) {
    return /_ms$/.test(col) ? 'estimated (latency buckets, within 1 %)'
      : 'estimated (HyperLogLog sketches, typically within 1 %)';
  }

  function format(col, v) {
    if (typeof v !== 'number') return v === null || v === undefined ? '' : String(v);
    if (/rate$|^conversion$/.test(col)) return pct(v);
    if (/_ms$/.test(col)) return v.toFixed(1) + ' ms';
    if (/seconds$/.test(col)) return duration(v);
    return Number.isInteger(v) ? int(v) : String(Math.round(v * 1000) / 1000);
  }

  class ApiError extends Error {}
  async function request(url, init) {
    setBusy(1);
    try {
      const r = await fetch(url, Object.assign({ credentials: 'same-origin' }, init));
      const body = await r.json().catch(() => ({ error: r.status + ' ' + r.statusText }));
      if (r.status === 401) showLogin();
      if (!r.ok) throw new ApiError(body.error || 'HTTP ' + r.status);
      return body;
    } finally {
      setBusy(-1);
    }
  }
  const report = (name, params) => request('/api/reports/' + name + '?' + params.toString());

  // ---- state: URL <-> filters ---------------------------------------------------------
  function isFilter(k) {
    return k === 'from' || k === 'to' || k === 'bots' || DIMENSIONS.includes(k) || k.startsWith('prop.');
  }
  function filterParams(extra) {
    const p = new URLSearchParams();
    for (const [k, v] of state) if (isFilter(k)) p.append(k, v);
    for (const [k, v] of Object.entries(extra || {})) if (v !== undefined && v !== '') p.set(k, v);
    return p;
  }
  function save(push) {
    const url = location.pathname + (state.toString() ? '?' + state.toString() : '');
    history[push ? 'pushState' : 'replaceState'](null, '', url);
  }
  function addFilter(dim, value) {
    const v = value === null || value === undefined ? NONE : String(value);
    if (!state.getAll(dim).includes(v)) state.append(dim, v);
    save(true);
    render();
  }
  function removeFilter(dim, value) {
    const rest = state.getAll(dim).filter((v) => v !== value);
    state.delete(dim);
    for (const v of rest) state.append(dim, v);
    save(true);
    render();
  }
  function renderChrome() {
    $('#from').value = state.get('from') || $('#from').value;
    $('#to').value = state.get('to') || $('#to').value;
    $('#bots').checked = state.get('bots') === 'include';
    const chips = $('#filters');
    chips.replaceChildren();
    for (const [k, v] of state) {
      if (!isFilter(k) || k === 'from' || k === 'to' || k === 'bots') continue;
      chips.append(el('span', { class: 'chip', 'data-dim': k, 'data-value': v, title: k + ' = ' + v },
        el('span', { text: k + ' = ' + v }),
        el('button', { type: 'button', 'aria-label': 'remove filter ' + k, text: '×', onclick: () => removeFilter(k, v) })));
    }
    const tab = currentTab();
    for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.tab === tab);
  }
  function currentTab() {
    const t = state.get('tab') || 'overview';
    return VIEWS[t] ? t : 'overview';
  }
  // The first answer tells the default range in the site's time zone.
  function learnRange(answer) {
    if (answer && answer.range) {
      if (!state.get('from')) $('#from').value = answer.range.from;
      if (!state.get('to')) $('#to').value = answer.range.to;
    }
    return answer;
  }

  // ---- cards and tables ---------------------------------------------------------------
  function card(title, ...body) {
    return el('section', { class: 'card' }, el('div', { class: 'card-head' }, el('h3', { text: title })), ...body);
  }
  // A card whose content comes from a promise; errors show inside it.
  function asyncCard(title, promise, build) {
    const c = card(title, el('p', { class: 'muted', text: 'Loading…' }));
    const gen = generation;
    promise.then((data) => {
      if (gen !== generation) return;
      c.lastChild.replaceWith(build(data, c));
    }).catch((e) => {
      if (gen !== generation) return;
      c.lastChild.replaceWith(el('p', { class: 'error', text: e.message }));
    });
    return c;
  }
  function csvButton(key, table) {
    return el('button', { type: 'button', class: 'csv', text: 'CSV', title: 'Download as CSV', onclick: () => downloadCsv(key, table) });
  }
  function downloadCsv(key, table) {
    const cell = (v) => {
      let s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
      // No formulas when opened in a spreadsheet: a text cell starting with = + - @ tab or CR
      // gets a leading ' (OWASP), unless it is a plain number; as `tollgate query --format csv`.
      if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s) && !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) s = "'" + s;
      return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
    };
    const lines = [table.columns.map(cell).join(',')].concat(table.rows.map((r) => r.map(cell).join(',')));
    const url = URL.createObjectURL(new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/csv' }));
    const a = el('a', { href: url, download: 'tollgate-' + key.replace(/\W+/g, '-') + '.csv' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  // A table element for a report table; rows of a table with a dimension become filters.
  function tableEl(key, t, opts) {
    opts = opts || {};
    const dim = opts.clickable === false ? null : t.dimension;
    const numeric = t.columns.map((_, i) => t.rows.some((r) => typeof r[i] === 'number'));
    const metric = numeric.indexOf(true);
    const max = metric < 0 ? 0 : Math.max(0, ...t.rows.map((r) => Number(r[metric]) || 0));
    // Columns whose counts are estimates (visitors from sketches, latencies from buckets,
    // docs/api.md) say so.
    const estimated = t.estimated || [];
    const head = el('tr', {}, t.columns.map((c, i) => estimated.includes(c)
      ? el('th', { class: numeric[i] ? 'num' : null, text: c + ' ≈', title: c + ': ' + whyEstimated(c) })
      : el('th', { class: numeric[i] ? 'num' : null, text: c })));
    const body = t.rows.map((r) => {
      const raw = r[0] === null || r[0] === undefined ? NONE : String(r[0]);
      const tr = el('tr', dim ? {
        class: 'pick', tabindex: 0, 'data-value': raw, title: 'Filter: ' + dim + ' = ' + raw,
        onclick: () => addFilter(dim, raw),
        onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); addFilter(dim, raw); } },
      } : { 'data-value': t.dimension ? raw : null });
      r.forEach((v, i) => {
        if (i === 0 && t.dimension) {
          const share = max && metric > 0 ? (100 * (Number(r[metric]) || 0)) / max : 0;
          const bar = el('span', { class: 'bar-fill' });
          bar.style.width = share.toFixed(1) + '%';
          tr.append(el('td', { class: 'dim' }, bar, el('span', { class: v === null ? 'text none' : 'text', text: v === null ? NONE : String(v) })));
        } else {
          tr.append(el('td', { class: numeric[i] ? 'num' : null, text: opts.format ? opts.format(t.columns[i], v, i) : format(t.columns[i], v) }));
        }
      });
      return tr;
    });
    const table = el('table', { 'data-table': key }, el('thead', {}, head), el('tbody', {}, body));
    if (!t.rows.length) return el('p', { class: 'muted', text: 'No data for this selection.' });
    return el('div', { class: 'scroll' }, table);
  }
  function tableCard(title, key, promise, pick) {
    return asyncCard(title, promise, (data, c) => {
      const t = pick(data);
      c.querySelector('.card-head').append(csvButton(key, t));
      return tableEl(key, t);
    });
  }

  // ---- the overview chart -------------------------------------------------------------
  function chart(series) {
    // The drawing is as wide as the card, so its text stays legible on a phone.
    const W = Math.round(Math.min(900, Math.max(320, view.clientWidth - 40))), H = 220, P = { l: 44, r: 8, t: 10, b: 24 };
    const rows = series.rows;
    const pv = rows.map((r) => r[3]), vis = rows.map((r) => r[1]);
    const max = Math.max(1, ...pv);
    const x = (i) => P.l + (rows.length < 2 ? 0 : (i * (W - P.l - P.r)) / (rows.length - 1));
    const y = (v) => H - P.b - (v * (H - P.t - P.b)) / max;
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Page views and visitors over time' });
    for (const f of [0, 0.5, 1]) {
      const yy = y(max * f);
      root.append(svg('line', { x1: P.l, x2: W - P.r, y1: yy, y2: yy, stroke: '#e4e7ec' }));
      const label = svg('text', { x: P.l - 6, y: yy + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#667085' });
      label.textContent = int(Math.round(max * f));
      root.append(label);
    }
    const line = (vals) => vals.map((v, i) => (i ? 'L' : 'M') + x(i).toFixed(1) + ',' + y(v).toFixed(1)).join(' ');
    if (rows.length) {
      root.append(svg('path', { d: line(pv) + ` L${x(rows.length - 1)},${y(0)} L${x(0)},${y(0)} Z`, fill: '#dbe7fb' }));
      root.append(svg('path', { d: line(pv), fill: 'none', stroke: '#2f6fde', 'stroke-width': 2 }));
      root.append(svg('path', { d: line(vis), fill: 'none', stroke: '#12a37f', 'stroke-width': 2 }));
      const ticks = rows.length > 1 ? [0, Math.floor((rows.length - 1) / 2), rows.length - 1] : [0];
      for (const i of ticks) {
        const t = svg('text', { x: x(i), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === rows.length - 1 ? 'end' : 'middle', 'font-size': 11, fill: '#667085' });
        t.textContent = rows[i][0];
        root.append(t);
      }
      rows.forEach((r, i) => {
        const dot = svg('circle', { cx: x(i), cy: y(r[3]), r: 6, fill: 'transparent' });
        const tip = svg('title', {});
        tip.textContent = `${r[0]}: ${int(r[3])} page views, ${int(r[1])} visitors, ${int(r[2])} sessions`;
        dot.append(tip);
        root.append(dot);
      });
    }
    const legend = el('div', { class: 'legend' });
    for (const [color, name] of [['#2f6fde', 'Page views'], ['#12a37f', 'Visitors']]) {
      const swatch = el('i');
      swatch.style.background = color;
      legend.append(el('span', {}, swatch, name));
    }
    return el('div', { class: 'chart' }, legend, root);
  }

  // ---- views --------------------------------------------------------------------------
  const VIEWS = {
    overview() {
      const fp = filterParams();
      const kpis = el('div', { class: 'kpis' });
      const defs = [['visitors', 'Visitors', int], ['sessions', 'Sessions', int], ['pageviews', 'Page views', int],
        ['vps', 'Views / session', (v) => (v === undefined ? '–' : v.toFixed(2))], ['bounce', 'Bounce rate', pct],
        ['duration', 'Avg. session', duration]];
      for (const [id, label] of defs) {
        kpis.append(el('div', { class: 'kpi' }, el('div', { class: 'label', text: label }), el('div', { class: 'value', id: 'kpi-' + id, text: '…' })));
      }
      const overview = report('overview', fp).then(learnRange);
      const gen = generation;
      overview.then((o) => {
        if (gen !== generation) return;
        const t = o.totals;
        const values = { visitors: t.visitors, sessions: t.sessions, pageviews: t.pageviews, vps: t.views_per_session, bounce: t.bounce_rate, duration: t.avg_session_seconds };
        for (const [id, , f] of defs) {
          const e = $('#kpi-' + id);
          e.dataset.value = String(values[id]);
          e.textContent = f(values[id]);
        }
      }).catch(() => {});
      view.append(kpis,
        asyncCard('Traffic', overview, (o) => chart(o.series)),
        el('div', { class: 'grid' },
          tableCard('Top pages', 'pages.top', report('pages', filterParams({ limit: 10 })), (d) => d.top),
          tableCard('Channels', 'acquisition.channel', report('acquisition', filterParams({ dimension: 'channel', limit: 10 })), (d) => d.tables.channel),
          tableCard('Sources', 'acquisition.utm_source', report('acquisition', filterParams({ dimension: 'utm_source', limit: 10 })), (d) => d.tables.utm_source)));
    },
    pages() {
      const p = report('pages', filterParams()).then(learnRange);
      view.append(tableCard('Top pages', 'pages.top', p, (d) => d.top),
        el('div', { class: 'grid' },
          tableCard('Entry pages', 'pages.entry', p, (d) => d.entry),
          tableCard('Exit pages', 'pages.exit', p, (d) => d.exit)));
    },
    acquisition() {
      // One request per table: each counts distinct visitors over every session.
      view.append(el('div', { class: 'grid' }, SOURCES.map((d) =>
        tableCard(TITLES[d] || d, 'acquisition.' + d, report('acquisition', filterParams({ dimension: d })).then(learnRange), (x) => x.tables[d]))));
    },
    audience() {
      const a = report('audience', filterParams()).then(learnRange);
      view.append(el('div', { class: 'grid' }, CATALOG.audience.map((d) =>
        tableCard(TITLES[d] || d, 'audience.' + d, a, (x) => x.tables[d]))));
    },
    api() {
      const a = report('api', filterParams()).then(learnRange);
      view.append(asyncCard('API health', a, (d) => {
        const t = d.totals;
        const est = t.estimated || [];
        const p = (col) => [col.slice(0, 3) + (est.includes(col) ? ' ≈' : ''), format(col, t[col]), est.includes(col) ? whyEstimated(col) : null];
        return el('div', { class: 'kpis' }, [['Calls', int(t.calls)], ['Errors (5xx)', int(t.errors)], ['Error rate', pct(t.error_rate)],
          p('p50_ms'), p('p95_ms'), p('p99_ms')]
          .map(([l, v, why]) => el('div', { class: 'kpi', title: why }, el('div', { class: 'label', text: l }), el('div', { class: 'value', text: v }))));
      }), tableCard('Routes', 'api.routes', a, (d) => d.routes));
    },
    events() {
      const ev = state.get('ev_event') || '', prop = state.get('ev_property') || '';
      const form = el('form', { class: 'form', onsubmit: (e) => {
        e.preventDefault();
        setOrDelete('ev_event', $('#ev-event').value.trim());
        setOrDelete('ev_property', $('#ev-property').value.trim());
        save(true);
        render();
      } },
      el('label', {}, 'Event', el('input', { id: 'ev-event', value: ev, placeholder: 'purchased' })),
      el('label', {}, 'Break down by property', el('input', { id: 'ev-property', value: prop, placeholder: 'category' })),
      el('button', { class: 'primary', type: 'submit', text: 'Break down' }));
      const p = report('events', filterParams(ev && prop ? { event: ev, property: prop } : {})).then(learnRange);
      view.append(card('Custom events', form, el('p', { class: 'muted', text: 'Click an event to filter by it; give an event and a property to break it down.' })),
        tableCard('Events', 'events.events', p, (d) => d.events));
      if (ev && prop) view.append(tableCard(ev + ' by ' + prop, 'events.breakdown', p, (d) => d.breakdown));
    },
    funnel() { funnelView(); },
    attribution() { attributionView(); },
    retention() {
      const r = report('retention', filterParams()).then(learnRange);
      view.append(asyncCard('Weekly retention', r, (d, c) => {
        const t = d.cohorts;
        c.querySelector('.card-head').append(csvButton('retention.cohorts', t));
        const wrap = tableEl('retention.cohorts', t);
        // Weeks as a share of the cohort, the count in the tooltip.
        const body = wrap.querySelector('tbody');
        if (body) {
          t.rows.forEach((row, ri) => {
            row.forEach((v, i) => {
              if (i < 2) return;
              const cell = body.rows[ri].cells[i];
              cell.textContent = v === null ? '' : pct(row[1] ? v / row[1] : 0);
              cell.title = v === null ? '' : int(v) + ' people';
            });
          });
        }
        return el('div', {}, el('p', { class: 'muted', text: 'People by the week of their first visit in the range, and the share of them who came back each week after.' }), wrap);
      }));
    },
    realtime() {
      const load = () => {
        const gen = generation;
        report('realtime', filterParams()).then((d) => {
          if (gen !== generation) return;
          view.replaceChildren(el('div', { class: 'kpis' },
            el('div', { class: 'kpi' }, el('div', { class: 'label', text: 'Visitors, last 5 minutes' }), el('div', { class: 'value', id: 'rt-visitors', 'data-value': d.visitors, text: int(d.visitors) })),
            el('div', { class: 'kpi' }, el('div', { class: 'label', text: 'Page views, last 5 minutes' }), el('div', { class: 'value', text: int(d.pageviews) }))),
          card('Pages being viewed', tableEl('realtime.pages', d.pages)));
        }).catch((e) => { if (gen === generation) view.replaceChildren(el('p', { class: 'error', text: e.message })); });
      };
      load();
      realtimeTimer = setInterval(() => { if (!document.hidden) load(); }, 10000);
    },
    sql() {
      const input = el('textarea', { id: 'sql-input', spellcheck: 'false', value: state.get('q') || 'SELECT name, count(*) AS events\nFROM events\nGROUP BY name\nORDER BY events DESC' });
      const out = el('div');
      const err = el('p', { id: 'sql-error', class: 'error' });
      const run = async () => {
        state.set('q', input.value);
        save(false);
        err.textContent = '';
        try {
          const r = await request('/api/query', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: input.value, max_rows: 1000 }) });
          const t = { dimension: null, columns: r.columns, rows: r.rows };
          out.replaceChildren(el('div', { class: 'card-head' }, el('span', { class: 'muted', text: int(r.rows.length) + ' rows' + (r.truncated ? ' (truncated)' : '') }), csvButton('sql.result', t)),
            r.rows.length ? tableEl('sql.result', t) : el('p', { class: 'muted', text: 'No rows.' }));
        } catch (e) {
          out.replaceChildren();
          err.textContent = e.message;
        }
      };
      input.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } });
      view.append(card('SQL console', el('p', { class: 'muted', text: 'Read-only: one SELECT over the store (tables events, identities, …; docs/schema.md). Ctrl+Enter runs.' }),
        input, el('p', {}, el('button', { id: 'sql-run', class: 'primary', type: 'button', text: 'Run', onclick: run })), err, out));
      // A query from the URL is shown, never run on load: a link alone must not run SQL in
      // the signed-in dashboard. The click on Run is the consent.
      if (state.get('q')) out.replaceChildren(el('p', { id: 'sql-pending', class: 'muted', text: 'Query from the link: read it, then press Run.' }));
    },
  };
  function setOrDelete(k, v) { if (v) state.set(k, v); else state.delete(k); }

  // ---- funnel builder -----------------------------------------------------------------
  function stepRow(step) {
    const type = el('select', { class: 'step-type' }, el('option', { value: 'path', text: 'Page path' }), el('option', { value: 'event', text: 'Event' }));
    type.value = step.type;
    const props = step.props ? Object.entries(step.props).map(([k, v]) => k + '=' + v).join(',') : '';
    const row = el('div', { class: 'funnel-step' }, el('span', { class: 'n' }),
      type, el('input', { class: 'step-value', value: step.pattern || step.name || '', placeholder: 'glob like /product/* or an event name', 'aria-label': 'step' }),
      el('input', { class: 'step-props', value: props, placeholder: 'key=value,…  (events)', 'aria-label': 'properties' }),
      el('button', { type: 'button', class: 'step-remove', text: '×', 'aria-label': 'remove step', onclick: () => { if (document.querySelectorAll('.funnel-step').length > 2) { row.remove(); numberSteps(); } } }));
    return row;
  }
  function numberSteps() {
    document.querySelectorAll('.funnel-step .n').forEach((n, i) => { n.textContent = i + 1 + '.'; });
  }
  function readSteps() {
    return [...document.querySelectorAll('.funnel-step')].map((row) => {
      const type = row.querySelector('.step-type').value;
      const value = row.querySelector('.step-value').value.trim();
      if (type === 'path') return { type, pattern: value };
      const step = { type, name: value };
      const props = row.querySelector('.step-props').value.trim();
      if (props) {
        step.props = {};
        for (const pair of props.split(',')) {
          const at = pair.indexOf('=');
          if (at > 0) step.props[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
        }
      }
      return step;
    });
  }
  function funnelView() {
    let steps;
    try { steps = JSON.parse(state.get('f_steps') || 'null'); } catch (_) { steps = null; }
    if (!Array.isArray(steps) || steps.length < 2) {
      steps = [{ type: 'path', pattern: '/product/*' }, { type: 'event', name: 'registered' }];
    }
    const list = el('div', { id: 'funnel-steps' }, steps.map(stepRow));
    const windowIn = el('input', { id: 'funnel-window', value: state.get('f_window') || '1d', size: 5 });
    const breakdown = el('select', { id: 'funnel-breakdown' }, el('option', { value: '', text: 'none' }), DIMENSIONS.map((d) => el('option', { value: d, text: d })));
    breakdown.value = state.get('f_breakdown') || '';
    const result = el('div', { id: 'funnel-result' });
    const run = () => {
      state.set('f_steps', JSON.stringify(readSteps()));
      state.set('f_window', windowIn.value.trim() || '1d');
      setOrDelete('f_breakdown', breakdown.value);
      save(true);
      showFunnel(result);
    };
    view.append(card('Funnel', list,
      el('div', { class: 'form' },
        el('button', { id: 'funnel-add', type: 'button', text: '+ Step', onclick: () => { if (document.querySelectorAll('.funnel-step').length < 8) { list.append(stepRow({ type: 'event', name: '' })); numberSteps(); } } }),
        el('label', {}, 'Window', windowIn), el('label', {}, 'Break down by', breakdown),
        el('button', { id: 'funnel-run', class: 'primary', type: 'button', text: 'Run', onclick: run })),
      el('p', { class: 'muted', text: 'People who did each step in order, each within the window of the first step. Date range and filters apply to the first step.' }),
      result));
    numberSteps();
    if (state.get('f_steps')) showFunnel(result);
  }
  function showFunnel(result) {
    const gen = generation;
    result.replaceChildren(el('p', { class: 'muted', text: 'Running…' }));
    const p = filterParams({ steps: state.get('f_steps'), window: state.get('f_window'), breakdown: state.get('f_breakdown') || undefined });
    report('funnel', p).then((d) => {
      if (gen !== generation) return;
      const first = d.steps[0].people || 0;
      const rows = d.steps.map((s, i) => {
        const bar = el('div', { class: 'fbar' });
        bar.style.width = (first ? (100 * s.people) / first : 0).toFixed(1) + '%';
        return el('tr', { 'data-step': i + 1, 'data-people': s.people },
          el('td', { text: i + 1 + '. ' + s.label }), el('td', { class: 'num', text: int(s.people) }),
          el('td', { class: 'num', text: pct(s.conversion) }), el('td', { class: 'num', text: i ? pct(s.step_conversion) : '' }),
          el('td', { class: 'num', text: i ? duration(s.median_seconds) : '' }), el('td', { style: 'min-width:120px' }, bar));
      });
      const last = d.steps[d.steps.length - 1];
      const out = [el('p', {}, 'Conversion: ', el('strong', { id: 'funnel-conversion', 'data-value': last.conversion, text: pct(last.conversion) }), ' of ' + int(first) + ' people'),
        el('div', { class: 'scroll' }, el('table', { 'data-table': 'funnel.steps' },
          el('thead', {}, el('tr', {}, ['Step', 'People', 'Conversion', 'From previous', 'Median time', ''].map((h, i) => el('th', { class: i && i < 5 ? 'num' : null, text: h })))),
          el('tbody', {}, rows)))];
      if (d.breakdown) {
        out.push(el('div', { class: 'card-head' }, el('h3', { text: 'By ' + d.breakdown.dimension }), csvButton('funnel.breakdown', d.breakdown)),
          tableEl('funnel.breakdown', d.breakdown));
      }
      result.replaceChildren(...out);
    }).catch((e) => { if (gen === generation) result.replaceChildren(el('p', { class: 'error', text: e.message })); });
  }

  // ---- attribution --------------------------------------------------------------------
  function attributionView() {
    const ev = el('input', { id: 'attr-event', value: state.get('attr_event') || 'registered' });
    const lookback = el('input', { id: 'attr-lookback', value: state.get('attr_lookback') || '30d', size: 5 });
    const by = el('select', { id: 'attr-by' }, SOURCES.map((d) => el('option', { value: d, text: d })));
    by.value = state.get('attr_by') || 'channel';
    const result = el('div');
    const show = () => {
      const gen = generation;
      result.replaceChildren(el('p', { class: 'muted', text: 'Running…' }));
      report('attribution', filterParams({ event: state.get('attr_event'), lookback: state.get('attr_lookback'), by: state.get('attr_by') })).then((d) => {
        if (gen !== generation) return;
        result.replaceChildren(el('p', {}, el('strong', { id: 'attr-conversions', 'data-value': d.conversions, text: int(d.conversions) }), ' people converted (' + d.event + '), credited by ' + d.by + ':'),
          el('div', { class: 'card-head' }, el('span'), csvButton('attribution.table', d.table)), tableEl('attribution.table', d.table));
      }).catch((e) => { if (gen === generation) result.replaceChildren(el('p', { class: 'error', text: e.message })); });
    };
    const run = () => {
      state.set('attr_event', ev.value.trim());
      state.set('attr_lookback', lookback.value.trim() || '30d');
      state.set('attr_by', by.value);
      save(true);
      show();
    };
    view.append(card('Attribution',
      el('div', { class: 'form' }, el('label', {}, 'Conversion event', ev), el('label', {}, 'Lookback', lookback), el('label', {}, 'Credit', by),
        el('button', { id: 'attr-run', class: 'primary', type: 'button', text: 'Run', onclick: run })),
      el('p', { class: 'muted', text: 'First touch: the earliest visit from a source within the lookback before each person\'s first conversion. Last touch: the latest one that is not Direct.' }),
      result));
    if (state.get('attr_event')) show();
  }

  // ---- sign-in ------------------------------------------------------------------------
  function showLogin() {
    const d = $('#login');
    if (!d.open) d.showModal();
  }
  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('#login-error').textContent = '';
    try {
      await request('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: $('#login-token').value }) });
      $('#login').close();
      render();
    } catch (err) {
      $('#login-error').textContent = err.message;
    }
  });

  // ---- wiring -------------------------------------------------------------------------
  function render() {
    generation++;
    if (realtimeTimer) { clearInterval(realtimeTimer); realtimeTimer = null; }
    renderChrome();
    view.replaceChildren();
    setBusy(1); // held until the view's first requests have started
    try { VIEWS[currentTab()](); } finally { setBusy(-1); }
  }
  for (const b of document.querySelectorAll('#tabs button')) {
    b.addEventListener('click', () => { state.set('tab', b.dataset.tab); save(true); render(); });
  }
  for (const id of ['from', 'to']) {
    $('#' + id).addEventListener('change', (e) => { setOrDelete(id, e.target.value); save(true); render(); });
  }
  $('#bots').addEventListener('change', (e) => { setOrDelete('bots', e.target.checked ? 'include' : ''); save(true); render(); });
  $('#range').addEventListener('submit', (e) => e.preventDefault());
  window.addEventListener('popstate', () => { state = new URLSearchParams(location.search); render(); });
  document.body.dataset.busy = '0';
  render();
})();
