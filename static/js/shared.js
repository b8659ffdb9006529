// A shared battle: the server wrote each answer as text; draw it as the battle page does.
// Model output is untrusted: it reaches the page through renderMarkdown (DOM nodes) only.

import { renderMarkdown } from "./markdown.js";

for (const node of document.querySelectorAll("[data-markdown]")) {
  node.replaceChildren(renderMarkdown(node.textContent));
}
