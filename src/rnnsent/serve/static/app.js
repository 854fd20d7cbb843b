// The rnnsent page: send the text to /explain, then draw the verdict (a bar per label for
// models of K classes), the words coloured by influence and the explained label's probability
// after each word. Plain DOM and SVG, no libraries. The server fills in the wording: the page
// speaks of reviews and positive/negative for sentiment models only (body data-sentiment).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { height: 230, left: 44, right: 12, top: 12, bottom: 34 };

const elements = {};
let current = null; // { explanation, index, target } while a result is shown
let modelInfo = null; // GET /model, once it has answered
let shownText = ""; // the text whose explanation is shown (the label chooser explains it again)
const page = { noun: "review", sentiment: true };

// A server started with an API key wants it on every request but the page's own files. The page
// takes it from the address (http://host:port/#key=KEY, removed from the address bar at once)
// or asks for it when the server answers 401, and keeps it for this tab only.
const KEY_STORAGE = "rnnsent-api-key";

function storedKey() {
  try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch (error) { return ""; }
}

function storeKey(key) {
  try { sessionStorage.setItem(KEY_STORAGE, key); } catch (error) { /* private mode: asked again next time */ }
}

function takeKeyFromAddress() {
  const match = /(?:^#|&)key=([^&]*)/.exec(window.location.hash);
  if (!match) return;
  storeKey(decodeURIComponent(match[1]));
  history.replaceState(null, "", window.location.pathname + window.location.search);
}

async function apiFetch(url, options = {}, askForKey = true) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = { ...(options.headers || {}) };
    const key = storedKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(url, { ...options, headers });
    if (response.status !== 401 || !askForKey || attempt > 0) return response;
    const entered = window.prompt("This server needs an API key:");
    if (!entered || !entered.trim()) return response;
    storeKey(entered.trim());
  }
}

document.addEventListener("DOMContentLoaded", () => {
  takeKeyFromAddress();
  page.noun = document.body.dataset.noun || "text";
  page.sentiment = document.body.dataset.sentiment === "true";
  for (const id of ["review-form", "review", "submit", "status", "result", "label", "probability", "meter",
                    "meter-fill", "classes-box", "classes", "notes", "target-box", "target", "words", "words-help",
                    "readout", "chart-heading", "chart", "chart-summary", "model-info"]) {
    elements[id] = document.getElementById(id);
  }
  elements.target.addEventListener("change", () => explainAgain(elements.target.value));
  elements["review-form"].addEventListener("submit", (event) => { event.preventDefault(); analyse(); });
  elements.review.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); analyse(); }
  });
  for (const button of document.querySelectorAll("button.example")) {
    button.addEventListener("click", () => { elements.review.value = button.dataset.text; analyse(); });
  }
  elements.words.addEventListener("keydown", stepThroughWords);
  loadModelInfo();
});

async function analyse() {
  const text = elements.review.value;
  if (!text.trim()) {
    showStatus(`Type a ${page.noun} first.`, true);
    elements.review.focus();
    return;
  }
  await requestExplanation(text, null, "Reading…");
}

function explainAgain(target) {
  if (!current || !target || target === current.target) return;
  requestExplanation(shownText, target, `Explaining “${target}”…`);
}

async function requestExplanation(text, target, message) {
  elements.submit.disabled = true;
  elements.target.disabled = true;
  showStatus(message, false);
  try {
    const request = target ? { text, class: target } : { text };
    const response = await apiFetch("/explain", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(body.error || `the server answered ${response.status}`);
    }
    if (!modelInfo) await loadModelInfo(); // with an API key, /model answers once the key is known
    shownText = text;
    showResult(body);
    showStatus("", false);
  } catch (error) {
    showStatus(`Could not analyse the ${page.noun}: ${error.message}`, true);
  } finally {
    elements.submit.disabled = false;
    elements.target.disabled = false;
  }
}

function showStatus(message, isError) {
  elements.status.textContent = message;
  elements.status.classList.toggle("error", isError);
}

function percentOf(probability) {
  return (100 * probability).toFixed(1);
}

// The label an explanation is about: named by the server unless a binary model explained the
// label it scores, the second of its labels (sentiment: positive).
function targetOf(explanation) {
  if (explanation.target) return explanation.target;
  if (modelInfo && modelInfo.labels.length === 2) return modelInfo.labels[1];
  return page.sentiment ? "positive" : "the scored label";
}

function showResult(explanation) {
  const target = targetOf(explanation);
  current = { explanation, index: null, target };
  const label = elements.label;
  const manyClasses = explanation.probabilities !== undefined && explanation.probabilities !== null;
  if (manyClasses) {
    const over = explanation.labels;
    label.textContent = over ? (over.length ? over.join(", ") : "no label") : explanation.label;
    label.className = "label neutral";
    elements.probability.textContent = over
      ? `${over.length} of ${Object.keys(explanation.probabilities).length} labels over their thresholds`
      : `${percentOf(explanation.probabilities[explanation.label])}% ${explanation.label}`;
    elements.meter.hidden = true;
    drawClasses(explanation, target);
    drawTargetChooser(Object.keys(explanation.probabilities), target);
  } else {
    label.textContent = explanation.label;
    label.className = page.sentiment ? `label ${explanation.label}` : "label neutral";
    const percent = percentOf(explanation.probability);
    elements.probability.textContent = `${percent}% ${target}`;
    elements.meter.hidden = false;
    elements["meter-fill"].style.width = `${percent}%`;
    elements["classes-box"].hidden = true;
    elements["target-box"].hidden = true;
  }
  elements["words-help"].textContent = helpText(explanation, target);
  elements["chart-heading"].textContent = `Probability of “${target}” after each word`;

  const notes = [];
  const words = explanation.special.filter((isStart) => !isStart).length;
  notes.push(`${words} word${words === 1 ? "" : "s"} read.`);
  if (explanation.truncated) {
    notes.push(`The model reads at most a fixed number of tokens, so ${explanation.dropped_words} word${explanation.dropped_words === 1 ? " was" : "s were"} cut.`);
  }
  if (explanation.empty) notes.push("No words: the probability is the model's prior.");
  const unknown = explanation.oov.filter(Boolean).length;
  if (unknown) notes.push(`${unknown} word${unknown === 1 ? " is" : "s are"} not in the vocabulary.`);
  elements.notes.textContent = notes.join(" ");

  elements.result.hidden = false; // shown before drawing, so the chart can measure its width
  drawWords(explanation);
  drawChart(explanation);
  elements.readout.textContent = "";
}

function helpText(explanation, target) {
  const known = " Dotted underline: a word the model does not know." +
    ` Hover a word, or focus the ${page.noun} and use the arrow keys, to see its numbers.`;
  if (page.sentiment && !explanation.target) {
    return "Green words pushed the verdict towards positive, red towards negative; the stronger the colour, the " +
      "bigger the push." + known;
  }
  return `Green words raised the probability of “${target}”, red words lowered it; the stronger the colour, the ` +
    "bigger the push." + known;
}

function thresholdOf(name) {
  const thresholds = modelInfo && modelInfo.thresholds;
  return thresholds && typeof thresholds[name] === "number" ? thresholds[name] : 0.5;
}

// One row per label, in the model's order: its name, a bar and its probability. Multi-label
// models mark each label's threshold and the labels over it.
function drawClasses(explanation, target) {
  const list = elements.classes;
  list.replaceChildren();
  const over = explanation.labels ? new Set(explanation.labels) : null;
  for (const [name, probability] of Object.entries(explanation.probabilities)) {
    const row = document.createElement("li");
    row.className = "class-row";
    row.dataset.label = name;
    if (over ? over.has(name) : name === explanation.label) row.classList.add("chosen");
    if (name === target) row.classList.add("target");
    const title = document.createElement("span");
    title.className = "class-name";
    title.textContent = name;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = `${percentOf(probability)}%`;
    bar.append(fill);
    if (over) {
      const mark = document.createElement("span");
      mark.className = "threshold";
      mark.style.left = `${percentOf(thresholdOf(name))}%`;
      bar.append(mark);
    }
    const value = document.createElement("span");
    value.className = "class-probability";
    value.textContent = `${percentOf(probability)}%`;
    row.append(title, bar, value);
    if (over) {
      const state = document.createElement("span");
      state.className = "visually-hidden";
      state.textContent = over.has(name) ? " (over its threshold)" : "";
      row.append(state);
    }
    list.append(row);
  }
  elements["classes-box"].hidden = false;
}

function drawTargetChooser(names, target) {
  const select = elements.target;
  const known = Array.from(select.options, (option) => option.value);
  if (known.join("\u0000") !== names.join("\u0000")) {
    select.replaceChildren(...names.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      return option;
    }));
  }
  select.value = target;
  elements["target-box"].hidden = false;
}

function influenceColour(value, largest) {
  if (value === null || largest <= 0) return "";
  const share = Math.min(1, Math.abs(value) / largest);
  if (Math.abs(value) < 0.002 || share < 0.03) return "";
  const alpha = (0.08 + 0.7 * share).toFixed(3);
  return value > 0 ? `rgba(22, 140, 70, ${alpha})` : `rgba(200, 40, 40, ${alpha})`;
}

function largestInfluence(explanation) {
  return Math.max(0, ...explanation.influence.filter((v) => v !== null).map(Math.abs));
}

function drawWords(explanation) {
  const container = elements.words;
  container.replaceChildren();
  const largest = largestInfluence(explanation);
  explanation.tokens.forEach((token, index) => {
    if (explanation.special[index]) return;
    const span = document.createElement("span");
    span.className = "word" + (explanation.oov[index] ? " oov" : "");
    span.textContent = token;
    span.dataset.index = String(index);
    const influence = explanation.influence[index];
    span.dataset.influence = influence === null ? "" : influence.toFixed(4);
    span.style.backgroundColor = influenceColour(influence, largest);
    span.title = describe(explanation, index);
    span.addEventListener("mouseenter", () => select(index));
    container.append(span, " ");
  });
  if (!container.childElementCount) container.textContent = "(no words)";
}

function describe(explanation, index) {
  const influence = explanation.influence[index];
  const sign = influence > 0 ? "+" : "";
  const push = influence === null ? "" :
    `, influence ${sign}${(100 * influence).toFixed(1)} points${explanation.oov[index] ? " (unknown word)" : ""}`;
  const target = current ? current.target : targetOf(explanation);
  return `“${explanation.tokens[index]}”: ${percentOf(explanation.trajectory[index])}% ${target} after it${push}`;
}

function select(index) {
  if (!current) return;
  current.index = index;
  for (const node of document.querySelectorAll(".word.current, #chart .point.current")) {
    node.classList.remove("current");
  }
  const word = elements.words.querySelector(`.word[data-index="${index}"]`);
  if (word) word.classList.add("current");
  const point = elements.chart.querySelector(`.point[data-index="${index}"]`);
  if (point) point.classList.add("current");
  elements.readout.textContent = describe(current.explanation, index);
}

function stepThroughWords(event) {
  if (!current) return;
  const indices = current.explanation.special.map((isStart, i) => (isStart ? -1 : i)).filter((i) => i >= 0);
  if (!indices.length) return;
  const position = indices.indexOf(current.index);
  let next = null;
  if (event.key === "ArrowRight" || event.key === "ArrowDown") next = position < 0 ? 0 : Math.min(position + 1, indices.length - 1);
  else if (event.key === "ArrowLeft" || event.key === "ArrowUp") next = position < 0 ? 0 : Math.max(position - 1, 0);
  else if (event.key === "Home") next = 0;
  else if (event.key === "End") next = indices.length - 1;
  if (next === null) return;
  event.preventDefault();
  select(indices[next]);
}

function svg(name, attributes, parent) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (parent) parent.append(node);
  return node;
}

function drawChart(explanation) {
  const chart = elements.chart;
  chart.replaceChildren();
  // Drawing units follow the box's width (within limits), so text stays legible on a phone.
  const width = Math.max(320, Math.min(640, Math.round(chart.getBoundingClientRect().width) || 640));
  chart.setAttribute("viewBox", `0 0 ${width} ${CHART.height}`);
  const values = explanation.trajectory;
  const plotWidth = width - CHART.left - CHART.right;
  const plotHeight = CHART.height - CHART.top - CHART.bottom;
  const x = (i) => CHART.left + (values.length > 1 ? (i * plotWidth) / (values.length - 1) : plotWidth / 2);
  const y = (p) => CHART.top + (1 - p) * plotHeight;

  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    svg("line", { x1: CHART.left, x2: width - CHART.right, y1: y(p), y2: y(p),
                  class: p === 0.5 ? "grid half" : "grid" }, chart);
    const tick = svg("text", { x: CHART.left - 6, y: y(p) + 4, "text-anchor": "end", class: "axis-label" }, chart);
    tick.textContent = `${Math.round(p * 100)}%`;
  }
  const axis = svg("text", { x: CHART.left + plotWidth / 2, y: CHART.height - 8, "text-anchor": "middle",
                             class: "axis-label" }, chart);
  axis.textContent = "words read →";
  const first = svg("text", { x: CHART.left, y: CHART.height - 20, "text-anchor": "start", class: "axis-label" }, chart);
  first.textContent = explanation.special[0] ? "start" : "1";
  const last = svg("text", { x: width - CHART.right, y: CHART.height - 20, "text-anchor": "end",
                             class: "axis-label" }, chart);
  last.textContent = String(values.length - (explanation.special[0] ? 1 : 0));

  svg("polyline", { class: "line", points: values.map((p, i) => `${x(i).toFixed(1)},${y(p).toFixed(1)}`).join(" ") }, chart);
  const radius = values.length > 120 ? 2 : values.length > 50 ? 3 : 4;
  values.forEach((p, i) => {
    const point = svg("circle", { cx: x(i).toFixed(1), cy: y(p).toFixed(1), r: radius, class: "point",
                                  fill: p > 0.5 ? "rgb(22, 140, 70)" : "rgb(200, 40, 40)", "data-index": i }, chart);
    const title = svg("title", {}, point);
    title.textContent = describe(explanation, i);
    point.addEventListener("mouseenter", () => select(i));
  });
  const start = values[0];
  const end = values[values.length - 1];
  const lowest = Math.min(...values);
  const highest = Math.max(...values);
  elements["chart-summary"].textContent =
    `From ${(100 * start).toFixed(0)}% at the first token to ${(100 * end).toFixed(0)}% at the last; ` +
    `lowest ${(100 * lowest).toFixed(0)}%, highest ${(100 * highest).toFixed(0)}%. The dashed line is 50%.`;
}

async function loadModelInfo() {
  try {
    const response = await apiFetch("/model", {}, false);
    if (!response.ok) return;
    const info = await response.json();
    modelInfo = info;
    if (info.page) {
      document.title = info.page.title;
      elements.review.placeholder = info.page.placeholder;
    }
    const model = info.config.model;
    const parts = [`Model “${info.name}”${info.preset ? ` (preset ${info.preset})` : ""}`];
    if (!info.sentiment && Array.isArray(info.labels)) {
      const kind = { binary: "two labels", multiclass: "one label of", multilabel: "any labels of" }[info.task] || info.task;
      const shown = info.labels.length > 12 ? `${info.labels.slice(0, 12).join(", ")}, …` : info.labels.join(", ");
      parts.push(`${kind}: ${shown}`);
    }
    parts.push(`${model.bidirectional ? "bidirectional " : ""}${model.cell} cell, ${model.hidden_size} units`,
               `${info.vocab_size.toLocaleString("en")}-word vocabulary`,
               `reads up to ${info.config.text.maxlen} tokens`);
    if (typeof info.metrics.accuracy === "number") {
      parts.push(`test accuracy ${(100 * info.metrics.accuracy).toFixed(1)}%`);
    }
    elements["model-info"].textContent = parts.join(" · ") + ". API: /docs";
  } catch (error) {
    // The footer is optional; the page works without it.
  }
}
