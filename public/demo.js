// The demo page, a way to walk the catalog. A search starts from a catalog poster (found by title:
// GET /posters?q=, or clicked among results) or from an upload; it asks for similar posters
// (GET /posters/{id}/similar, POST /posters/similar) and their genre vote, or, once results are
// marked "more" or "less like this", for a recommendation (POST /posters/recommend). The filters
// and the diversity slider go with every search; the near-duplicate badge comes from
// /posters/{id}/near-duplicates and POST /posters/near-duplicates; GET /posters/map draws the map.

// The same colours as the PNG map (src/figures/palette.ts): the 10 most common genres, then grey.
const COLOURS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#17becf'];
const OTHER = '#b0b0b0';
const NEIGHBOURS = 8;
const SUGGESTIONS = 8;
const PAD = 0.03;

const $ = (id) => document.getElementById(id);
/** An element with properties, `aria` attributes ({ aria: { label: '…' } }) and children. */
function el(tag, { aria = {}, ...props } = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const [name, value] of Object.entries(aria)) node.setAttribute(`aria-${name}`, value);
  node.append(...children);
  return node;
}

const status = (text, error = false) => {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
};

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) throw Object.assign(new Error(body?.error?.message ?? `${path}: HTTP ${response.status}`), { code: body?.error?.code });
  return body;
}

const posterName = (p) => (p.title ? `${p.title}${p.year ? ` (${p.year})` : ''}` : p.id);

// ---- The map ------------------------------------------------------------------------------------

let map = null; // { points, byId, colourOf }
let rings = [];

const mapReady = api('/posters/map').then((body) => {
  const colours = new Map(body.genres.slice(0, COLOURS.length).map((g, i) => [g.genre, COLOURS[i]]));
  map = { ...body, byId: new Map(body.points.map((p) => [p.id, p])), colourOf: (genre) => colours.get(genre) ?? OTHER };
  $('map-info').textContent = `${body.points.length.toLocaleString('en-US')} posters, ${body.model_version}`;
  const legend = body.genres.slice(0, COLOURS.length).map((g) => el('li', {}, [el('i', { style: `background:${colours.get(g.genre)}` }), `${g.genre} (${g.count})`]));
  const rest = body.genres.slice(COLOURS.length).reduce((n, g) => n + g.count, 0);
  if (rest) legend.push(el('li', {}, [el('i', { style: `background:${OTHER}` }), `Other (${rest})`]));
  $('legend').replaceChildren(...legend);
  drawMap();
  return map;
});
mapReady.catch((error) => ($('map-info').textContent = `unavailable: ${error.message}`));
$('map-info').textContent = 'loading (computed once per model; the first time takes a while)…';

const toCanvas = (p, size) => [(PAD + p.x * (1 - 2 * PAD)) * size, (PAD + (1 - p.y) * (1 - 2 * PAD)) * size];

function drawMap() {
  if (!map) return;
  const canvas = $('map-canvas');
  const size = Math.round(canvas.clientWidth * devicePixelRatio) || 600;
  canvas.width = canvas.height = size;
  const context = canvas.getContext('2d');
  // Dots shrink as the catalog grows, within what stays visible.
  const radius = Math.max(1.5 * devicePixelRatio, Math.min(6 * devicePixelRatio, size / Math.sqrt(map.points.length) / 8));
  context.globalAlpha = 0.7;
  for (const point of map.points) {
    const [x, y] = toCanvas(point, size);
    context.fillStyle = map.colourOf(point.single_genre);
    context.beginPath();
    context.arc(x, y, radius, 0, 2 * Math.PI);
    context.fill();
  }
  context.globalAlpha = 1;
  context.lineWidth = Math.max(1.5, size / 400);
  context.strokeStyle = '#000';
  for (const hit of rings) {
    const point = map.byId.get(hit.id);
    if (!point) continue;
    const [x, y] = toCanvas(point, size);
    context.beginPath();
    context.arc(x, y, radius + 4 * devicePixelRatio, 0, 2 * Math.PI);
    context.stroke();
  }
}
addEventListener('resize', drawMap);

/** The marker: a catalog poster's own place, or an upload's, the similarity-weighted mean of its nearest posters' places. */
async function placeMarker(anchor, results) {
  await mapReady;
  let place = anchor.poster ? map.byId.get(anchor.poster.id) : null;
  if (!place) {
    let x = 0, y = 0, total = 0;
    for (const hit of results) {
      const point = map.byId.get(hit.id);
      if (!point) continue;
      const weight = Math.max(hit.similarity, 0) + 1e-6;
      x += weight * point.x;
      y += weight * point.y;
      total += weight;
    }
    if (total === 0) return;
    place = { x: x / total, y: y / total };
  }
  const marker = $('map-marker');
  const [left, top] = toCanvas(place, 100);
  marker.style.left = `${left}%`;
  marker.style.top = `${top}%`;
  marker.hidden = false;
  drawMap();
}

// ---- What is searched ---------------------------------------------------------------------------

/**
 * The anchor is where a search starts: a catalog poster ({ poster }) or an upload ({ file, url }).
 * `positive` and `negative` hold the posters marked more and less like this; with any, the search
 * is a recommendation from the anchor and them.
 */
const state = { anchor: null, match: null, positive: [], negative: [], nearDuplicates: new Map(), generation: 0 };

function filters() {
  const params = new URLSearchParams({ k: String(NEIGHBOURS) });
  if ($('genre').value) params.set('genre', $('genre').value);
  for (const [id, name] of [['year-from', 'year_from'], ['year-to', 'year_to']]) if ($(id).value) params.set(name, $(id).value);
  if (Number($('diversity').value) > 0) params.set('diversity', $('diversity').value);
  return params;
}

/** A multipart request with the upload in `field` beside text fields. */
const uploadForm = (file, field = 'image', fields = []) => {
  const body = new FormData();
  for (const [name, value] of fields) body.append(name, value);
  body.append(field, file, file.name || 'poster');
  return { method: 'POST', body };
};

/** The similar posters, or the recommendation once examples are marked. */
function findPosters(anchor, params) {
  const marked = state.positive.length + state.negative.length > 0;
  if (!marked) {
    return anchor.poster
      ? api(`/posters/${encodeURIComponent(anchor.poster.id)}/similar?${params}`)
      : api(`/posters/similar?${params}`, uploadForm(anchor.file));
  }
  const settings = Object.fromEntries(params);
  if (anchor.poster) {
    const body = {
      positive: [anchor.poster.id, ...state.positive.map((p) => p.id)],
      negative: state.negative.map((p) => p.id),
      ...Object.fromEntries(Object.entries(settings).map(([name, value]) => [name, name === 'genre' ? value : Number(value)])),
    };
    return api('/posters/recommend', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  }
  const fields = [...state.positive.map((p) => ['positive', p.id]), ...state.negative.map((p) => ['negative', p.id]), ...Object.entries(settings)];
  return api('/posters/recommend', uploadForm(anchor.file, 'positive', fields));
}

const findVote = (anchor) =>
  anchor.poster ? api(`/posters/${encodeURIComponent(anchor.poster.id)}/genre?k=5`) : api('/posters/genre?k=5', uploadForm(anchor.file));

const findNearDuplicates = (anchor) =>
  anchor.poster ? api(`/posters/${encodeURIComponent(anchor.poster.id)}/near-duplicates`) : api('/posters/near-duplicates', uploadForm(anchor.file));

/** Starts from a catalog poster or an upload: the examples go, the near-duplicates are looked up once. */
async function searchFrom(anchor) {
  state.anchor = anchor;
  state.match = null;
  state.positive = [];
  state.negative = [];
  state.nearDuplicates = new Map();
  if (anchor.poster) history.replaceState(null, '', `#poster=${encodeURIComponent(anchor.poster.id)}`);
  else history.replaceState(null, '', location.pathname);
  showQuery();
  const nearDuplicates = findNearDuplicates(anchor).then(
    (body) => body.near_duplicates,
    () => [],
  );
  await run({ vote: true, nearDuplicates });
}

/** Asks for the posters (and, for a new anchor, its genre vote and near-duplicates) and shows them; a newer search wins. */
async function run({ vote = false, nearDuplicates = null } = {}) {
  const anchor = state.anchor;
  if (!anchor) return;
  const generation = ++state.generation;
  const started = performance.now();
  status('Searching…');
  $('results').setAttribute('aria-busy', 'true');
  try {
    const [found, votes, duplicates] = await Promise.all([findPosters(anchor, filters()), vote ? findVote(anchor) : null, nearDuplicates]);
    if (generation !== state.generation) return;
    if (duplicates) state.nearDuplicates = new Map(duplicates.map((d) => [d.id, d]));
    // An upload's catalog poster with the same pixels (a catalog poster's own is itself); a recommendation names it among its examples.
    if (!anchor.poster) state.match = found.catalog_match ?? found.positive?.find((e) => e.source === 'upload')?.poster ?? null;
    showResults(found);
    if (votes) showGenres(votes);
    showQuery();
    const kind = state.positive.length + state.negative.length > 0 ? 'Recommended' : 'Answered';
    status(`${kind} in ${Math.round(performance.now() - started)} ms by ${found.model_version}.`);
    await placeMarker(anchor, found.results).catch(() => {});
  } catch (error) {
    if (generation === state.generation) status(error.message, true);
  } finally {
    if (generation === state.generation) $('results').removeAttribute('aria-busy');
  }
}

// ---- Showing it ---------------------------------------------------------------------------------

function showQuery() {
  const { anchor, match } = state;
  $('query').hidden = !anchor;
  if (!anchor) return;
  $('query-image').src = anchor.poster ? anchor.poster.image_url : anchor.url;
  $('query-name').textContent = anchor.poster ? posterName(anchor.poster) : 'your upload';
  const badge = $('query-badge');
  const duplicates = [...state.nearDuplicates.values()];
  const nearest = match ?? duplicates[0];
  badge.hidden = !nearest;
  if (nearest) {
    const others = duplicates.filter((d) => d.id !== nearest.id).length;
    const more = others ? ` and ${others} more` : '';
    if (match) badge.textContent = `same picture as ${posterName(match)}`;
    else if (anchor.poster) badge.textContent = `near-duplicate in the catalog: ${posterName(nearest)}${more}`;
    else badge.textContent = `near-duplicate of ${posterName(nearest)}${more}`;
  }
  $('match').hidden = !match;
  if (match) $('match').textContent = 'This picture is a catalog poster: it is never among its own results, and the genre vote leaves it out.';

  const marked = [...state.positive.map((p) => ['+', p]), ...state.negative.map((p) => ['−', p])];
  $('examples').hidden = marked.length === 0;
  $('results-heading').firstChild.textContent = marked.length ? 'Recommended posters ' : 'Nearest posters ';
  $('results-kind').textContent = marked.length ? 'more like the + posters, less like the − ones' : 'cosine similarity of the embeddings';
  $('example-list').replaceChildren(
    ...marked.map(([sign, poster]) =>
      el('li', { className: sign === '+' ? 'more' : 'less' }, [
        `${sign} ${posterName(poster)} `,
        el('button', { type: 'button', className: 'remove', textContent: '×', aria: { label: `Remove ${posterName(poster)} from the examples` }, onclick: () => unmark(poster) }),
      ]),
    ),
  );
}

function showResults(found) {
  rings = found.results;
  const { match } = state;
  $('results').replaceChildren(
    ...found.results.map((hit) => {
      const name = posterName(hit);
      const copy = state.nearDuplicates.get(hit.id) ?? (match && match.id === hit.id ? match : null);
      const more = state.positive.some((p) => p.id === hit.id);
      const less = state.negative.some((p) => p.id === hit.id);
      return el('li', { className: 'card' }, [
        el('button', { type: 'button', className: 'open', title: `${name}: ${hit.genres.join(', ')}`, aria: { label: `Search from ${name}` }, onclick: () => searchFrom({ poster: hit }) }, [
          el('img', { src: hit.image_url, alt: '', loading: 'lazy', width: 130, height: 195 }),
          el('span', { className: 'title', textContent: name }),
          el('span', { className: 'genres', textContent: hit.genres.join(', ') }),
        ]),
        ...(copy ? [el('span', { className: 'badge', textContent: 'near-duplicate', title: `the same picture as the poster searched from (hash distance ${copy.distance ?? 0})` })] : []),
        el('div', { className: 'sim' }, [el('span', {}, [el('b', { style: `width:${Math.max(hit.similarity, 0) * 100}%` })]), hit.similarity.toFixed(3)]),
        el('div', { className: 'feedback' }, [
          el('button', { type: 'button', className: 'more', textContent: '+ More', aria: { label: `More like ${name}`, pressed: String(more) }, onclick: () => mark(hit, 'positive') }),
          el('button', { type: 'button', className: 'less', textContent: '− Less', aria: { label: `Less like ${name}`, pressed: String(less) }, onclick: () => mark(hit, 'negative') }),
        ]),
      ]);
    }),
  );
}

/** Options of the genre filter: every genre the catalog has (the map's, then each vote's full list). */
function addGenres(names) {
  const select = $('genre');
  const known = new Set([...select.options].map((o) => o.value));
  const all = [...new Set([...known, ...names])].filter(Boolean).sort((a, b) => a.localeCompare(b));
  if (all.length === known.size - 1) return;
  const chosen = select.value;
  select.replaceChildren(el('option', { value: '', textContent: 'Any genre' }), ...all.map((genre) => el('option', { value: genre, textContent: genre })));
  select.value = chosen;
}

function showGenres(vote) {
  addGenres(vote.scores.map((s) => s.genre));
  const shown = vote.scores.filter((s) => s.score > 0).slice(0, 8);
  $('genres').replaceChildren(
    ...shown.map((s, i) =>
      el('li', { className: i === 0 ? 'top' : '' }, [
        el('span', { textContent: s.genre }),
        el('span', { className: 'track' }, [el('span', { className: 'bar', style: `width:${(s.score / shown[0].score) * 100}%` })]),
        el('span', { className: 'value', textContent: `${Math.round(s.score * 100)}%` }),
      ]),
    ),
  );
  $('majority').textContent = vote.majority.genre
    ? `Plain majority of the neighbours' first genres: ${vote.majority.genre} (${vote.majority.votes} of ${vote.neighbors.length}).`
    : '';
}

// ---- More or less like this -------------------------------------------------------------------

/** Marks a result more (positive) or less (negative) like what is wanted: the search becomes a recommendation. */
function mark(poster, side) {
  const other = side === 'positive' ? 'negative' : 'positive';
  state[other] = state[other].filter((p) => p.id !== poster.id);
  if (!state[side].some((p) => p.id === poster.id)) state[side] = [...state[side], poster];
  showQuery();
  void run();
}

function unmark(poster) {
  state.positive = state.positive.filter((p) => p.id !== poster.id);
  state.negative = state.negative.filter((p) => p.id !== poster.id);
  showQuery();
  void run();
}

$('clear-examples').addEventListener('click', () => {
  state.positive = [];
  state.negative = [];
  showQuery();
  void run();
});

// ---- Title search -------------------------------------------------------------------------------

let typing = null;
let asking = null;
$('q').addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(suggest, 150);
});
$('title-search').addEventListener('submit', (event) => {
  event.preventDefault();
  clearTimeout(typing);
  void suggest().then(() => $('suggestions').querySelector('button')?.click());
});
$('q').addEventListener('keydown', (event) => {
  if (event.key === 'ArrowDown') {
    event.preventDefault();
    $('suggestions').querySelector('button')?.focus();
  }
});
$('suggestions').addEventListener('keydown', (event) => {
  const buttons = [...$('suggestions').querySelectorAll('button')];
  const at = buttons.indexOf(document.activeElement);
  if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    event.preventDefault();
    const next = at + (event.key === 'ArrowDown' ? 1 : -1);
    (next < 0 ? $('q') : buttons[Math.min(next, buttons.length - 1)]).focus();
  } else if (event.key === 'Escape') {
    $('q').focus();
    $('suggestions').replaceChildren();
  }
});

/** The titles matching what is typed (with the filters), as buttons that search from the poster. */
async function suggest() {
  const q = $('q').value;
  asking?.abort();
  if (!/[\p{L}\p{N}]/u.test(q)) {
    $('suggestions').replaceChildren();
    return;
  }
  asking = new AbortController();
  const params = filters();
  params.delete('k');
  params.delete('diversity');
  params.set('q', q);
  params.set('limit', String(SUGGESTIONS));
  try {
    const { posters } = await api(`/posters?${params}`, { signal: asking.signal });
    $('suggestions').replaceChildren(
      ...(posters.length
        ? posters.map((poster) =>
            el('li', {}, [
              el('button', { type: 'button', onclick: () => pick(poster) }, [
                el('img', { src: poster.image_url, alt: '', loading: 'lazy', width: 28, height: 42 }),
                el('span', { textContent: posterName(poster) }),
              ]),
            ]),
          )
        : [el('li', { className: 'note', textContent: 'No title matches.' })]),
    );
  } catch (error) {
    if (error.name !== 'AbortError') $('suggestions').replaceChildren(el('li', { className: 'note error', textContent: error.message }));
  }
}

function pick(poster) {
  $('suggestions').replaceChildren();
  $('q').value = poster.title ?? poster.id;
  void searchFrom({ poster });
}

// ---- Uploads, the random poster, filters --------------------------------------------------------

function upload(file) {
  const preview = $('preview');
  URL.revokeObjectURL(preview.src);
  const url = URL.createObjectURL(file);
  preview.src = url;
  preview.hidden = false;
  $('drop-hint').textContent = 'Drop or click to try another';
  void searchFrom({ file, url });
}

$('file').addEventListener('change', (event) => {
  const [file] = event.target.files;
  if (file) upload(file);
});
const drop = $('drop');
drop.addEventListener('dragover', (event) => {
  event.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (event) => {
  event.preventDefault();
  drop.classList.remove('over');
  const [file] = event.dataTransfer.files;
  if (file) upload(file);
});
$('random').addEventListener('click', async () => {
  try {
    const ids = map ? map.points.map((p) => p.id) : (await api('/posters?limit=500')).posters.map((p) => p.id);
    const id = ids[Math.floor(Math.random() * ids.length)];
    await searchFrom({ poster: await api(`/posters/${encodeURIComponent(id)}`) });
  } catch (error) {
    status(error.message, true);
  }
});

for (const id of ['genre', 'year-from', 'year-to', 'diversity']) $(id).addEventListener('change', () => void run());
$('diversity').addEventListener('input', () => ($('diversity-value').value = $('diversity').value));

mapReady.then(({ genres }) => addGenres(genres.map((g) => g.genre)), () => {});

api('/ready')
  .then((ready) => ($('model').textContent = `${ready.model_version}, ${ready.posters.toLocaleString('en-US')} posters`))
  .catch(() => ($('model').textContent = 'starting…'));

const linked = new URLSearchParams(location.hash.slice(1)).get('poster');
if (linked) api(`/posters/${encodeURIComponent(linked)}`).then((poster) => searchFrom({ poster }), (error) => status(error.message, true));
