// The sc2c operator console (issue 22). A plain ES module the browser loads as is: no build step.
// Every value from the server goes into the page through textContent or attributes, never as HTML.

const $ = (selector) => document.querySelector(selector);
const SVG = 'http://www.w3.org/2000/svg';
/** Tiles by call id: the element, and an AbortController that stops its stream. */
const tiles = new Map();
/** Calls whose tile was closed here: not adopted again while their hang-up is in flight. */
const closed = new Set();

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith('svg:')
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, String(v));
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, init = {}) {
  const res = await fetch(path, {
    ...init,
    headers: { 'Content-Type': 'application/json', ...(init.headers ?? {}) },
  });
  if (res.status === 204) return null;
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error ?? `${res.status} ${res.statusText}`);
  return body;
}

const status = (text) => {
  $('#status').textContent = text;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mb = (bytes) => `${(bytes / 1e6).toFixed(2)} MB`;
const pathLabel = (path) => (path === 'direct-tcp' ? 'direct (TCP)' : (path ?? '–'));

/** H.264 in fMP4 through Media Source Extensions, or the MJPEG fallback. */
const mseWorks = () =>
  typeof MediaSource !== 'undefined' && MediaSource.isTypeSupported('video/mp4; codecs="avc1.42C01E"');

// ---- cameras -------------------------------------------------------------------------------

async function refreshCameras() {
  let list;
  try {
    list = (await api('/api/cameras')).cameras ?? [];
  } catch (error) {
    status(`camera list: ${error.message}`);
    return;
  }
  const rows = list.map((cam) =>
    el(
      'tr',
      { 'data-camera': cam.user },
      el('td', { text: cam.user }),
      el('td', { class: cam.online ? 'online' : 'offline', text: cam.online ? '● online' : '○ offline' }),
      el('td', { text: cam.natClass ?? '–' }),
      el('td', { text: cam.rttMs === null ? '–' : `${cam.rttMs} ms` }),
      el('td', {
        text: cam.lastCall
          ? `${cam.lastCall.route}${cam.lastCall.transport === 'tcp' ? ' (TCP)' : ''}, ${cam.lastCall.agoS} s ago`
          : '–',
      }),
      el('td', {}, el('button', { class: 'watch', text: 'Watch', onclick: () => watch(cam.user) })),
    ),
  );
  rows.forEach((row, i) => {
    row.querySelector('button').disabled = !list[i].online;
  });
  $('#cameras tbody').replaceChildren(
    ...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 6, text: 'no cameras this user may call' }))]),
  );
}

// ---- tiles ----------------------------------------------------------------------------------

async function watch(camera) {
  const view = mseWorks() ? 'mse' : 'mjpeg';
  status(`calling ${camera}…`);
  let call;
  try {
    call = await api('/api/calls', { method: 'POST', body: JSON.stringify({ camera, view }) });
  } catch (error) {
    status(error.message);
    return;
  }
  status(`${camera}: ${pathLabel(call.path)} path, set up in ${call.setupMs} ms`);
  showTile(call);
}

/** A tile for a call that is up: placed from this page, or found running (a reload, the demo). */
function showTile(call) {
  const { camera, view } = call;
  const abort = new AbortController();
  const media =
    view === 'mse'
      ? el('video', { muted: '', autoplay: '', playsinline: '', 'data-call': call.id })
      : el('img', { alt: `${camera} live`, src: `/api/calls/${encodeURIComponent(call.id)}/video.mjpg` });
  if (view === 'mse') media.muted = true;
  const tile = el(
    'article',
    { class: 'tile', 'data-call': call.id, 'data-camera': camera },
    el(
      'header',
      {},
      el('span', { text: camera }),
      el('button', {
        title: 'hang up',
        'aria-label': `close ${camera}`,
        text: '×',
        onclick: () => closeTile(call.id),
      }),
    ),
    media,
    el('dl', { class: 'panel' }),
  );
  $('#grid .empty')?.remove();
  $('#grid').append(tile);
  tiles.set(call.id, { tile, abort });
  renderPanel(tile, call);
  if (view === 'mse')
    playMse(media, call.id, abort.signal).catch((error) => status(`${camera}: ${error.message}`));
}

async function closeTile(id) {
  const entry = tiles.get(id);
  if (!entry) return;
  tiles.delete(id);
  closed.add(id);
  entry.abort.abort();
  entry.tile.remove();
  await api(`/api/calls/${encodeURIComponent(id)}`, { method: 'DELETE' }).catch(() => {});
  status('call closed');
}

/** Waits for the stream's codec, then feeds the fMP4 bytes into a SourceBuffer as they arrive. */
async function playMse(video, id, signal) {
  let mime;
  for (let i = 0; i < 100 && !mime && !signal.aborted; i++) {
    const { calls } = await api('/api/calls');
    mime = calls.find((c) => c.id === id)?.live.mime;
    if (!mime) await sleep(200);
  }
  if (!mime) throw new Error('no keyframe from the camera within 20 s');
  const source = new MediaSource();
  video.src = URL.createObjectURL(source);
  await new Promise((r) => source.addEventListener('sourceopen', r, { once: true }));
  const buffer = source.addSourceBuffer(mime);
  const queue = [];
  const pump = () => {
    if (buffer.updating || source.readyState !== 'open') return;
    // Keep about 20 s behind the playhead: a long call must not fill the browser's memory.
    const ranges = buffer.buffered;
    if (ranges.length && video.currentTime - ranges.start(0) > 30) {
      buffer.remove(ranges.start(0), video.currentTime - 20);
      return;
    }
    if (queue.length === 0) return;
    const bytes = new Uint8Array(queue.reduce((n, q) => n + q.byteLength, 0));
    let at = 0;
    for (const q of queue.splice(0)) {
      bytes.set(q, at);
      at += q.byteLength;
    }
    buffer.appendBuffer(bytes);
  };
  buffer.addEventListener('updateend', pump);
  // Live: stay within half a second of the newest frame.
  const chase = setInterval(() => {
    const r = video.buffered;
    if (r.length && r.end(r.length - 1) - video.currentTime > 1.5)
      video.currentTime = r.end(r.length - 1) - 0.3;
    if (video.paused && r.length) video.play().catch(() => {});
  }, 1000);
  signal.addEventListener('abort', () => clearInterval(chase));
  const res = await fetch(`/api/calls/${encodeURIComponent(id)}/video.mp4`, { signal });
  if (!res.ok) throw new Error(`video stream: ${res.status}`);
  const reader = res.body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    queue.push(value);
    pump();
  }
}

function renderPanel(tile, p) {
  const row = (label, value, cls) => [
    el('dt', { text: label }),
    el('dd', cls ? { class: cls, text: value } : { text: value }),
  ];
  const num = (v, unit) => (v === null || v === undefined ? '–' : `${v}${unit}`);
  tile
    .querySelector('.panel')
    .replaceChildren(
      ...row(
        'route',
        p.state === 'ended' ? `ended: ${p.endedReason}` : pathLabel(p.path),
        p.state === 'ended' ? 'ended' : `route-${p.route}`,
      ),
      ...row('why', p.why ?? '–'),
      ...row('setup', num(p.setupMs, ' ms')),
      ...row('bitrate', num(p.bitrateKbps, ' kbit/s')),
      ...row('fps', num(p.fps, '')),
      ...row('loss', num(p.lossPercent, ' %')),
      ...row('jitter', num(p.jitterMs, ' ms')),
      ...row('RTT', num(p.rttMs, ' ms')),
      ...row('direct', mb(p.bytes.direct)),
      ...row('relayed', mb(p.bytes.relay)),
    );
  tile.dataset.route = p.route ?? '';
  tile.dataset.path = p.path ?? '';
}

async function refreshPanels() {
  const { calls } = await api('/api/calls').catch(() => ({ calls: [] }));
  for (const p of calls) {
    const entry = tiles.get(p.id);
    if (entry) renderPanel(entry.tile, p);
    // Calls placed before this page opened (a reload, `npm run demo -- --console`) get tiles too.
    else if (p.state === 'up' && !closed.has(p.id) && (p.view === 'mjpeg' || mseWorks())) showTile(p);
  }
}

// ---- relay savings charts -------------------------------------------------------------------

function bars(svg, items, { max = 1, format = (v) => `${Math.round(v * 100)} %` } = {}) {
  const w = 360;
  const h = 160;
  const band = (w - 20) / Math.max(1, items.length);
  const nodes = [];
  items.forEach((item, i) => {
    let y = h - 20;
    for (const part of item.parts) {
      const height = max > 0 ? ((h - 40) * part.value) / max : 0;
      y -= height;
      nodes.push(
        el('svg:rect', { x: 10 + i * band + 2, y, width: Math.max(1, band - 4), height, class: part.class }),
      );
    }
    // The first and last labels hang inwards, so a long one is not cut at the edge.
    const edge = items.length > 3 && (i === 0 || i === items.length - 1);
    const anchor = edge ? (i === 0 ? 'start' : 'end') : 'middle';
    const x =
      anchor === 'start' ? 10 + i * band : anchor === 'end' ? 10 + (i + 1) * band : 10 + i * band + band / 2;
    nodes.push(el('svg:text', { x, y: h - 6, 'text-anchor': anchor, text: item.label }));
    if (item.total !== undefined)
      nodes.push(
        el('svg:text', {
          x: 10 + i * band + band / 2,
          y: y - 3,
          'text-anchor': 'middle',
          text: format(item.total),
        }),
      );
  });
  const title = svg.querySelector('title');
  svg.replaceChildren(...(title ? [title] : []), ...nodes);
}

async function refreshReport() {
  let report;
  try {
    report = await api('/api/report');
  } catch (error) {
    $('#savings-total').textContent = `no report: ${error.message}`;
    return;
  }
  const t = report.total;
  $('#savings-total').textContent =
    `${t.calls} ${t.calls === 1 ? 'call' : 'calls'} · ${mb(t.direct.bytes)} direct, ${mb(t.relay.bytes)} relayed · saved ${t.savedRatio === null ? '–' : `${(t.savedRatio * 100).toFixed(1)} %`}`;
  const series = report.series ?? [];
  bars(
    $('#chart-time'),
    series.map((s, i) => ({
      label:
        i === 0 || i === series.length - 1
          ? // UTC, as the server's records are: HH:MM at both ends of the axis.
            `${new Date(s.from).toISOString().slice(11, 16)} UTC`
          : '',
      parts: [{ value: s.savedRatio ?? 0, class: 'bar-direct' }],
      total: s.calls ? (s.savedRatio ?? 0) : undefined,
    })),
  );
  const short = (nat) =>
    nat
      .split('/')
      .map((p) =>
        p
          .replace('endpoint-independent', 'EI')
          .replace('address-and-port-dependent', 'APD')
          .replace('address-dependent', 'AD'),
      )
      .join('/');
  bars(
    $('#chart-pairs'),
    (report.pairs ?? []).slice(0, 6).map((p) => ({
      label: `${short(p.callerNat).slice(0, 9)}→${short(p.calleeNat).slice(0, 9)}`,
      parts: [{ value: p.savedRatio ?? 0, class: 'bar-direct' }],
      total: p.savedRatio ?? 0,
    })),
  );
  const r = report.byRoute ?? { direct: 0, relay: 0, failed: 0 };
  const most = Math.max(1, r.direct, r.relay, r.failed);
  bars(
    $('#chart-routes'),
    [
      { label: 'direct', parts: [{ value: r.direct, class: 'bar-direct' }], total: r.direct },
      { label: 'relay', parts: [{ value: r.relay, class: 'bar-relay' }], total: r.relay },
      { label: 'failed', parts: [{ value: r.failed, class: 'bar-failed' }], total: r.failed },
    ],
    { max: most, format: (v) => String(v) },
  );
}

// ---- loops (each bounded by the page's life; errors shown, never thrown) ----------------------

refreshCameras();
refreshReport();
refreshPanels().catch(() => {});
setInterval(refreshCameras, 5000);
setInterval(() => refreshPanels().catch(() => {}), 1000);
setInterval(refreshReport, 10_000);
