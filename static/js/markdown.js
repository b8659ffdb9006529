// Untrusted Markdown (model answers) turned into DOM nodes.
//
// Safety by construction: every node is made with createElement and every piece of text goes in
// through textContent or a Text node. Nothing here parses HTML, so raw HTML in an answer is shown
// as the characters it is. Links are kept only for absolute http(s) URLs. Images are never loaded
// (that would tell a third party who reads the answer); they become plain links.
//
// The subset: paragraphs (a single newline is a line break), ATX headings, bullet and numbered
// lists (nested by indentation), block quotes, fenced code blocks, GitHub-style tables,
// horizontal rules, and inline **strong**, *emphasis*, ~~strike~~, `code`, [links](https://...),
// <https://...> and bare https:// URLs. Streaming answers are re-rendered whole, so an open fence
// or an unclosed ** simply renders as far as it goes.

const MAX_DEPTH = 12; // deeper nesting is shown as text: a hostile answer cannot exhaust the stack
const LINK_SCAN = 2000; // how far to look for the end of a link, so unmatched brackets stay linear

const FENCE = /^( {0,3})(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const BULLET = /^( {0,3})([-*+])(?:([ \t]+)(.*))?$/;
const ORDERED = /^( {0,3})(\d{1,9})([.)])(?:([ \t]+)(.*))?$/;
const TABLE_RULE = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;
const BARE_URL = /^https?:\/\/[^\s<>"'`]+/;
const ESCAPABLE = "\\`*_{}[]()#+-.!|~<>\"'";

export const LINK_REL = "noopener noreferrer nofollow ugc";

export function renderMarkdown(source) {
  const fragment = document.createDocumentFragment();
  const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
  renderBlocks(lines, fragment, 0);
  return fragment;
}

function isBlank(line) {
  return line.trim() === "";
}

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

function listMarker(line) {
  const bullet = BULLET.exec(line);
  if (bullet) {
    // "- " alone is an empty item; "-" glued to text ("-5") is not a list
    if (bullet[3] === undefined && bullet[4] === undefined && line.trim() !== bullet[2]) return null;
    const gap = (bullet[3] || " ").length;
    const width = bullet[1].length + 1 + (gap > 4 ? 1 : gap);
    return { ordered: false, start: 1, width, text: bullet[4] || "" };
  }
  const ordered = ORDERED.exec(line);
  if (ordered) {
    if (ordered[4] === undefined && line.trim() !== ordered[2] + ordered[3]) return null;
    const gap = (ordered[4] || " ").length;
    const width = ordered[1].length + ordered[2].length + 1 + (gap > 4 ? 1 : gap);
    return { ordered: true, start: Number(ordered[2]), width, text: ordered[5] || "" };
  }
  return null;
}

function startsBlock(line) {
  const marker = listMarker(line);
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    // An empty item cannot interrupt a paragraph (CommonMark): "391." there is text.
    (marker !== null && !(marker.ordered && marker.text === ""))
  );
}

// A number and its dot alone ("391."), with nothing of an item after it: an answer that is a
// number, not an empty list numbered from it.
function loneNumber(lines, i) {
  const marker = listMarker(lines[i]);
  if (marker === null || !marker.ordered || marker.text !== "") return false;
  const next = lines[i + 1];
  return next === undefined || isBlank(next) || next.length - next.trimStart().length < marker.width;
}

function renderBlocks(lines, parent, depth) {
  if (depth > MAX_DEPTH) {
    const p = el("p");
    appendLines(p, lines.join("\n"));
    parent.append(p);
    return;
  }
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i += 1;
      continue;
    }
    let match;
    if ((match = FENCE.exec(line))) {
      i = renderFence(lines, i, match, parent);
    } else if ((match = HEADING.exec(line))) {
      // The page's own headings are h1/h2; an answer's outline sits below them.
      const level = Math.min(6, match[1].length + 2);
      const heading = el(`h${level}`, `md-h${match[1].length}`);
      renderInline(match[2] || "", heading, depth, false);
      parent.append(heading);
      i += 1;
    } else if (RULE.test(line)) {
      parent.append(el("hr"));
      i += 1;
    } else if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && (match = QUOTE.exec(lines[i]))) {
        inner.push(match[1]);
        i += 1;
      }
      const quote = el("blockquote");
      renderBlocks(inner, quote, depth + 1);
      parent.append(quote);
    } else if (listMarker(line) && !loneNumber(lines, i)) {
      i = renderList(lines, i, parent, depth);
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1])) {
      i = renderTable(lines, i, parent, depth);
    } else {
      const text = [];
      while (i < lines.length && !isBlank(lines[i]) && (text.length === 0 || !startsBlock(lines[i]))) {
        text.push(lines[i].trim());
        i += 1;
      }
      const p = el("p");
      renderInline(text.join("\n"), p, depth, false);
      parent.append(p);
    }
  }
}

function renderFence(lines, start, match, parent) {
  const indent = match[1].length;
  const fence = match[2];
  const language = match[3].slice(0, 30);
  const body = [];
  let i = start + 1;
  while (i < lines.length) {
    const line = lines[i];
    const trimmed = line.trim();
    if (trimmed.startsWith(fence[0].repeat(fence.length)) && /^([`~])\1*$/.test(trimmed)) {
      i += 1;
      break;
    }
    body.push(line.slice(Math.min(indent, line.length - line.trimStart().length)));
    i += 1;
  }
  parent.append(codeBlock(body.join("\n"), language));
  return i;
}

function codeBlock(text, language) {
  const block = el("div", "md-code");
  const bar = el("div", "md-code-bar");
  const label = el("span", "md-code-lang");
  label.textContent = language || "code";
  const copy = el("button", "md-copy");
  copy.type = "button";
  copy.textContent = "Copy";
  bar.append(label, copy);
  const pre = el("pre");
  const code = el("code");
  code.textContent = text;
  pre.append(code);
  block.append(bar, pre);
  return block;
}

function renderList(lines, start, parent, depth) {
  const first = listMarker(lines[start]);
  const list = el(first.ordered ? "ol" : "ul");
  if (first.ordered && first.start !== 1) list.start = first.start;
  let i = start;
  let item = null;
  let width = 0;
  let body = [];
  const close = () => {
    if (item === null) return;
    while (body.length && isBlank(body[body.length - 1])) body.pop();
    renderBlocks(body, item, depth + 1);
    list.append(item);
  };
  while (i < lines.length) {
    const line = lines[i];
    const indent = line.length - line.trimStart().length;
    const marker = indent < (item === null ? 4 : width) ? listMarker(line) : null;
    if (marker && marker.ordered === first.ordered) {
      close();
      item = el("li");
      width = marker.width;
      body = [marker.text];
      i += 1;
    } else if (isBlank(line)) {
      // A blank line ends the list unless the next line still belongs to the item.
      let ahead = i + 1;
      while (ahead < lines.length && isBlank(lines[ahead])) ahead += 1;
      const next = lines[ahead];
      const nextIndent = next === undefined ? 0 : next.length - next.trimStart().length;
      const continues = next !== undefined && (nextIndent >= width || (listMarker(next)?.ordered === first.ordered && nextIndent < width));
      if (!continues) break;
      body.push("");
      i += 1;
    } else if (indent >= width) {
      body.push(line.slice(width));
      i += 1;
    } else if (!isBlank(lines[i - 1]) && !startsBlock(line)) {
      body.push(line.trim()); // a lazy continuation of the item's paragraph
      i += 1;
    } else {
      break;
    }
  }
  close();
  if (first.ordered) {
    // Room for the widest number, which the default padding only has up to two digits.
    const digits = String(first.start + list.children.length - 1).length;
    if (digits > 2) {
      list.classList.add("md-ol-wide");
      list.style.setProperty("--md-ol-digits", String(digits));
    }
  }
  parent.append(list);
  return i;
}

function splitRow(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  const cells = [];
  let cell = "";
  for (let k = 0; k < row.length; k += 1) {
    if (row[k] === "\\" && row[k + 1] === "|") {
      cell += "|";
      k += 1;
    } else if (row[k] === "|") {
      cells.push(cell.trim());
      cell = "";
    } else {
      cell += row[k];
    }
  }
  cells.push(cell.trim());
  return cells;
}

function renderTable(lines, start, parent, depth) {
  const header = splitRow(lines[start]);
  const aligns = splitRow(lines[start + 1]).map((spec) => {
    if (spec.startsWith(":") && spec.endsWith(":")) return "md-center";
    if (spec.endsWith(":")) return "md-right";
    return "";
  });
  const wrap = el("div", "md-table");
  const table = el("table");
  const head = el("thead");
  const headRow = el("tr");
  header.forEach((text, column) => {
    const th = el("th", aligns[column] || "");
    renderInline(text, th, depth, false);
    headRow.append(th);
  });
  head.append(headRow);
  const bodyRows = el("tbody");
  let i = start + 2;
  while (i < lines.length && !isBlank(lines[i]) && lines[i].includes("|")) {
    const cells = splitRow(lines[i]);
    const tr = el("tr");
    for (let column = 0; column < header.length; column += 1) {
      const td = el("td", aligns[column] || "");
      renderInline(cells[column] || "", td, depth, false);
      tr.append(td);
    }
    bodyRows.append(tr);
    i += 1;
  }
  table.append(head, bodyRows);
  wrap.append(table);
  parent.append(wrap);
  return i;
}

function appendLines(parent, text) {
  const parts = text.split("\n");
  parts.forEach((part, index) => {
    if (index > 0) parent.append(el("br"));
    if (part) parent.append(document.createTextNode(part));
  });
}

function isWordChar(ch) {
  return ch !== undefined && /[\p{L}\p{N}]/u.test(ch);
}

function isSpace(ch) {
  return ch === undefined || /\s/.test(ch);
}

export function safeUrl(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

function link(href) {
  const a = el("a");
  a.href = href;
  a.rel = LINK_REL;
  a.target = "_blank";
  return a;
}

// [label](destination "title"): the label's end and the destination, or null.
function parseLink(text, open) {
  let depth = 0;
  let close = -1;
  const labelLimit = Math.min(text.length, open + LINK_SCAN);
  for (let k = open; k < labelLimit; k += 1) {
    if (text[k] === "\\") k += 1;
    else if (text[k] === "[") depth += 1;
    else if (text[k] === "]" && --depth === 0) {
      close = k;
      break;
    }
  }
  if (close < 0 || text[close + 1] !== "(") return null;
  depth = 0;
  const destinationLimit = Math.min(text.length, close + 1 + LINK_SCAN);
  for (let k = close + 1; k < destinationLimit; k += 1) {
    if (text[k] === "(") depth += 1;
    else if (text[k] === ")" && --depth === 0) {
      let destination = text.slice(close + 2, k).trim();
      if (destination.startsWith("<") && destination.includes(">")) {
        destination = destination.slice(1, destination.indexOf(">"));
      } else {
        destination = destination.split(/\s+/)[0] || "";
      }
      return { label: text.slice(open + 1, close), destination, end: k + 1 };
    }
  }
  return null;
}

const SPECIAL = /[\\`[!<h*_~]/g;
const always = () => true;

function renderInline(text, parent, depth, inLink) {
  if (depth > MAX_DEPTH) {
    appendLines(parent, text);
    return;
  }
  // Whether a position can close a span depends on that position alone, and openers are met
  // left to right: so the answer for one delimiter is remembered and reused until passed. This
  // keeps floods of unmatched delimiters ("*a *a *a ...") linear instead of quadratic.
  const closers = new Map();
  const findCloser = (delimiter, from, canClose) => {
    const known = closers.get(delimiter);
    if (known && from >= known.from && (known.at < 0 || known.at >= from)) return known.at;
    let at = text.indexOf(delimiter, from);
    while (at >= 0 && !canClose(at)) at = text.indexOf(delimiter, at + 1);
    closers.set(delimiter, { from, at });
    return at;
  };
  let plain = "";
  const flush = () => {
    if (plain) appendLines(parent, plain);
    plain = "";
  };
  let i = 0;
  while (i < text.length) {
    SPECIAL.lastIndex = i;
    const next = SPECIAL.exec(text);
    if (next === null) {
      plain += text.slice(i);
      break;
    }
    if (next.index > i) {
      plain += text.slice(i, next.index);
      i = next.index;
    }
    const ch = text[i];
    if (ch === "\\" && i + 1 < text.length && ESCAPABLE.includes(text[i + 1])) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (ch === "`") {
      let run = 1;
      while (text[i + run] === "`") run += 1;
      const fence = "`".repeat(run);
      const at = findCloser(
        fence,
        i + run,
        (k) => text[k + run] !== "`" && text[k - 1] !== "`",
      );
      if (at < 0) {
        plain += fence;
        i += run;
        continue;
      }
      flush();
      const code = el("code");
      let inner = text.slice(i + run, at).replace(/\n/g, " ");
      if (inner.length > 2 && inner.startsWith(" ") && inner.endsWith(" ")) inner = inner.slice(1, -1);
      code.textContent = inner;
      parent.append(code);
      i = at + run;
      continue;
    }
    if (
      !inLink &&
      (ch === "[" || (ch === "!" && text[i + 1] === "[")) &&
      findCloser("](", i, always) >= 0 &&
      findCloser(")", i, always) >= 0
    ) {
      const open = ch === "!" ? i + 1 : i;
      const parsed = parseLink(text, open);
      if (parsed) {
        const href = safeUrl(parsed.destination);
        if (href === null) {
          // Not a web link (javascript:, data:, a relative path...): show the source as typed.
          plain += text.slice(i, parsed.end);
        } else {
          flush();
          const a = link(href);
          renderInline(parsed.label || parsed.destination, a, depth + 1, true);
          parent.append(a);
        }
        i = parsed.end;
        continue;
      }
    }
    if (!inLink && ch === "<") {
      const end = text.indexOf(">", i);
      const inside = end > i && end - i < LINK_SCAN ? text.slice(i + 1, end) : "";
      const href = inside && !/\s/.test(inside) ? safeUrl(inside) : null;
      if (href !== null) {
        flush();
        const a = link(href);
        a.textContent = inside;
        parent.append(a);
        i = end + 1;
        continue;
      }
    }
    if (!inLink && ch === "h" && !isWordChar(text[i - 1]) && text.startsWith("http", i)) {
      const found = BARE_URL.exec(text.slice(i, i + LINK_SCAN));
      if (found) {
        const shown = found[0].replace(/[.,;:!?'")\]]+$/, "");
        const href = safeUrl(shown);
        if (href !== null) {
          flush();
          const a = link(href);
          a.textContent = shown;
          parent.append(a);
          i += shown.length;
          continue;
        }
      }
    }
    if (ch === "*" || ch === "_" || ch === "~") {
      let run = 1;
      while (text[i + run] === ch) run += 1;
      const size = ch === "~" ? (run >= 2 ? 2 : 0) : Math.min(run, 2);
      const opens = size > 0 && !isSpace(text[i + run]) && (ch !== "_" || !isWordChar(text[i - 1]));
      if (opens) {
        const at = findCloser(
          ch.repeat(size),
          i + size + 1,
          (k) =>
            !isSpace(text[k - 1]) &&
            text[k + size] !== ch &&
            (ch !== "_" || !isWordChar(text[k + size])),
        );
        if (at > i + size) {
          flush();
          const tag = ch === "~" ? "del" : size === 2 ? "strong" : "em";
          const node = el(tag);
          renderInline(text.slice(i + size, at), node, depth + 1, inLink);
          parent.append(node);
          i = at + size;
          continue;
        }
      }
      plain += ch.repeat(run);
      i += run;
      continue;
    }
    plain += ch;
    i += 1;
  }
  flush();
}

// The copy buttons of code blocks live inside rendered answers, which are rebuilt on every frame:
// one listener on the element that holds them.
export function copyCodeOnClick(container) {
  container.addEventListener("click", async (event) => {
    const button = event.target.closest(".md-copy");
    if (!button) return;
    const code = button.closest(".md-code").querySelector("code").textContent;
    try {
      await navigator.clipboard.writeText(code);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => {
      button.textContent = "Copy";
    }, 1500);
  });
}

// An answer as the pages show it: its Markdown, then why it stopped (an error, the length limit)
// or that it is still awaited. `answer` holds text, error and finish (null while streaming).
export function answerContent(answer) {
  const content = renderMarkdown(answer.text);
  if (answer.error) {
    const failed = document.createElement("p");
    failed.className = "answer-error";
    failed.textContent = answer.error;
    content.append(failed);
  } else if (answer.finish === "length") {
    const cut = document.createElement("p");
    cut.className = "answer-note";
    cut.textContent = "This answer stopped at its length limit.";
    content.append(cut);
  } else if (!answer.text && answer.finish === null) {
    const waiting = document.createElement("p");
    waiting.className = "answer-waiting";
    waiting.textContent = "Waiting for the answer…";
    content.append(waiting);
  }
  return content;
}
