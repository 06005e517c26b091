// The demo page: one upload goes to POST /posters/similar and POST /posters/genre; GET /posters/map
// gives every catalog poster's position on the embedding map.

// The same colours as the PNG map (src/figures/palette.ts): the 10 most common genres, then grey.
const COLOURS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#17becf'];
const OTHER = '#b0b0b0';
const NEIGHBOURS = 8;
const PAD = 0.03;

const $ = (id) => document.getElementById(id);
function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

const status = (text, error = false) => {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
};

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.error?.message ?? `${path}: HTTP ${response.status}`);
  return body;
}

// ---- The map ------------------------------------------------------------------------------------

let map = null; // { points, byId, colourOf }
let neighbours = [];

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
  for (const hit of neighbours) {
    const point = map.byId.get(hit.id);
    if (!point) continue;
    const [x, y] = toCanvas(point, size);
    context.beginPath();
    context.arc(x, y, radius + 4 * devicePixelRatio, 0, 2 * Math.PI);
    context.stroke();
  }
}
addEventListener('resize', drawMap);

/** The upload's place: the similarity-weighted mean of its nearest posters' positions. */
async function placeMarker(results) {
  await mapReady;
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
  const marker = $('map-marker');
  const [left, top] = toCanvas({ x: x / total, y: y / total }, 100);
  marker.style.left = `${left}%`;
  marker.style.top = `${top}%`;
  marker.hidden = false;
  drawMap();
}

// ---- Results ------------------------------------------------------------------------------------

const posterName = (p) => (p.title ? `${p.title}${p.year ? ` (${p.year})` : ''}` : p.id);

function showResults(similar) {
  neighbours = similar.results;
  const match = similar.catalog_match;
  $('match').hidden = !match;
  if (match) $('match').textContent = `This picture is catalog poster ${posterName(match)}: it finds itself first; the genre vote leaves it out.`;
  $('results').replaceChildren(
    ...similar.results.map((hit) =>
      el('li', { className: 'card' }, [
        el('a', { href: hit.url, title: `${posterName(hit)}: ${hit.genres.join(', ')}` }, [
          el('img', { src: hit.image_url, alt: posterName(hit), loading: 'lazy' }),
          el('div', { className: 'title', textContent: posterName(hit) }),
          el('div', { className: 'genres', textContent: hit.genres.join(', ') }),
        ]),
        el('div', { className: 'sim' }, [el('span', {}, [el('b', { style: `width:${Math.max(hit.similarity, 0) * 100}%` })]), hit.similarity.toFixed(3)]),
      ]),
    ),
  );
}

function showGenres(vote) {
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

async function search(file) {
  const preview = $('preview');
  URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $('drop-hint').textContent = 'Drop or click to try another';
  status('Searching…');
  const form = () => {
    const body = new FormData();
    body.append('image', file, file.name || 'poster');
    return { method: 'POST', body };
  };
  const started = performance.now();
  try {
    const [similar, vote] = await Promise.all([api(`/posters/similar?k=${NEIGHBOURS}`, form()), api('/posters/genre?k=5', form())]);
    showResults(similar);
    showGenres(vote);
    status(`Answered in ${Math.round(performance.now() - started)} ms by ${similar.model_version}.`);
    await placeMarker(similar.results).catch(() => {});
  } catch (error) {
    status(error.message, true);
  }
}

// ---- Input --------------------------------------------------------------------------------------

$('file').addEventListener('change', (event) => {
  const [file] = event.target.files;
  if (file) void search(file);
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
  if (file) void search(file);
});
$('random').addEventListener('click', async () => {
  try {
    const ids = map ? map.points.map((p) => p.id) : (await api('/posters?limit=500')).posters.map((p) => p.id);
    const id = ids[Math.floor(Math.random() * ids.length)];
    const response = await fetch(`/posters/${encodeURIComponent(id)}/image`);
    if (!response.ok) throw new Error(`poster ${id}: HTTP ${response.status}`);
    const blob = await response.blob();
    await search(new File([blob], id, { type: blob.type }));
  } catch (error) {
    status(error.message, true);
  }
});
api('/ready')
  .then((ready) => ($('model').textContent = `${ready.model_version}, ${ready.posters.toLocaleString('en-US')} posters`))
  .catch(() => ($('model').textContent = 'starting…'));
