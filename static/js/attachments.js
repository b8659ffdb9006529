// Images attached to a prompt, for the battle and the chat panels alike: the attach button (a
// hidden file input behind it, which on a phone opens the camera or the gallery), paste into the
// prompt box, drop on the form, thumbnails each with a button to remove it.
//
// The parts are found by id, `prefix` apart (the template's attach_control macro):
// {prefix}attach, {prefix}attach-button, {prefix}images-input, {prefix}attachments. The limits
// come from the panel's data-max-images and data-max-image-bytes.

const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];

// The visitor's own pictures, shown back as data URLs (the page's policy allows no blob: URLs).
export function thumbnails(images) {
  const list = document.createElement("ul");
  list.className = "asked-images";
  images.forEach((url, index) => {
    const item = document.createElement("li");
    const img = document.createElement("img");
    img.src = url;
    img.alt = `Attached image ${index + 1}`;
    item.append(img);
    list.append(item);
  });
  return list;
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function imageFiles(items) {
  return [...(items || [])].filter((file) => file && file.type && file.type.startsWith("image/"));
}

// `accepting()` says whether the panel takes images now (a battle's first prompt only; a chat
// whose model reads images); `notify(message)` shows a problem, or clears it with "".
export function imageAttacher({ root, prefix, form, promptBox, accepting, notify }) {
  const maxImages = Number(root.dataset.maxImages) || 0;
  const maxImageBytes = Number(root.dataset.maxImageBytes) || 0;
  const box = document.getElementById(`${prefix}attach`);
  const button = document.getElementById(`${prefix}attach-button`);
  const input = document.getElementById(`${prefix}images-input`);
  const list = document.getElementById(`${prefix}attachments`);
  // As data URLs (what the API takes), in order.
  const attached = [];

  function refresh() {
    if (button) button.disabled = attached.length >= maxImages || promptBox.disabled;
  }

  function render() {
    if (!list) return;
    list.replaceChildren();
    attached.forEach((url, index) => {
      const item = document.createElement("li");
      item.className = "attachment";
      const img = document.createElement("img");
      img.src = url;
      img.alt = `Attached image ${index + 1}`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "attachment-remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove image ${index + 1}`);
      remove.addEventListener("click", () => {
        attached.splice(index, 1);
        render();
        (list.querySelector(".attachment-remove") || button).focus();
      });
      item.append(img, remove);
      list.append(item);
    });
    list.hidden = attached.length === 0;
    refresh();
  }

  // Checked here for a quick answer; the server decodes each picture and has the last word.
  async function attachFiles(files) {
    if (!maxImages || !accepting()) return;
    const problems = [];
    for (const file of files) {
      if (attached.length >= maxImages) {
        problems.push(`At most ${maxImages} images per prompt.`);
        break;
      }
      if (!IMAGE_TYPES.includes(file.type)) {
        problems.push(`${file.name || "This file"} is not a PNG, JPEG, WebP or GIF image.`);
        continue;
      }
      if (file.size > maxImageBytes) {
        const mb = (maxImageBytes / 1e6).toFixed(1);
        problems.push(`${file.name || "This image"} is over ${mb} MB; attach a smaller one.`);
        continue;
      }
      try {
        attached.push(await readAsDataUrl(file));
      } catch {
        problems.push(`${file.name || "This image"} could not be read.`);
      }
    }
    notify(problems.join(" "));
    render();
  }

  if (button && input) {
    button.addEventListener("click", () => input.click());
    input.addEventListener("change", async () => {
      await attachFiles([...input.files]);
      input.value = "";
    });
    promptBox.addEventListener("paste", (event) => {
      const files = imageFiles(event.clipboardData && event.clipboardData.files);
      if (!files.length || !accepting()) return;
      event.preventDefault();
      attachFiles(files);
    });
    form.addEventListener("dragover", (event) => {
      if (!accepting() || !event.dataTransfer || ![...event.dataTransfer.types].includes("Files")) return;
      event.preventDefault();
      form.classList.add("is-dropping");
    });
    form.addEventListener("dragleave", () => form.classList.remove("is-dropping"));
    form.addEventListener("drop", (event) => {
      form.classList.remove("is-dropping");
      if (!accepting() || !event.dataTransfer) return;
      event.preventDefault();
      attachFiles(imageFiles(event.dataTransfer.files));
    });
  }

  return {
    // The images to send with the next prompt.
    images: () => [...attached],
    clear() {
      attached.length = 0;
      render();
    },
    // The control shown or not, as the panel says; the button disabled while the prompt box is
    // or the limit is reached.
    show(shown) {
      if (box) box.hidden = !shown || !maxImages;
      refresh();
    },
  };
}
