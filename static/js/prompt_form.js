// The prompt box of the battle and chat panels: its character count, and sending by the form's
// button or Ctrl+Enter (Cmd+Enter), only while the send button is enabled.

export function promptForm({ form, promptBox, sendButton, countLabel, maxPrompt, send }) {
  function updateCount() {
    countLabel.textContent = `${promptBox.value.length} / ${maxPrompt}`;
    countLabel.classList.toggle("is-near-limit", promptBox.value.length > maxPrompt * 0.9);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!sendButton.disabled) send();
  });

  promptBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (!sendButton.disabled) send();
    }
  });

  promptBox.addEventListener("input", updateCount);
  return updateCount;
}
