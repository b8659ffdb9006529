// Talking to the arena's JSON API and reading its event streams, for the pages' scripts.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function detailOf(status, data, response) {
  let message = "";
  if (data && typeof data.detail === "string") message = data.detail;
  else if (data && Array.isArray(data.detail)) message = data.detail.map((d) => d.msg).join("; ");
  if (!message) message = `The server answered with status ${status}. Please try again.`;
  const retry = response && response.headers.get("Retry-After");
  if (status === 429 && retry) message += ` (You can try again in ${retry} s.)`;
  return message;
}

export async function api(method, path, body, signal) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers:
        body === undefined
          ? { Accept: "application/json" }
          : { Accept: "application/json", "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "The arena could not be reached. Check your connection and try again.");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, detailOf(response.status, data, response));
  return data;
}

// Reads one turn's SSE stream from `path`; says whether the closing "end" event arrived.
export async function readStream(path, onEvent, signal) {
  let response;
  try {
    response = await fetch(path, {
      headers: { Accept: "text/event-stream" },
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    return false;
  }
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new ApiError(response.status, detailOf(response.status, data, response));
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let ended = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let boundary;
      while ((boundary = /\r?\n\r?\n/.exec(buffer))) {
        const block = buffer.slice(0, boundary.index);
        buffer = buffer.slice(boundary.index + boundary[0].length);
        const data = block
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5))
          .join("\n");
        if (!data) continue;
        let event;
        try {
          event = JSON.parse(data);
        } catch {
          continue;
        }
        onEvent(event);
        if (event.type === "end") ended = true;
      }
    }
  } catch (error) {
    if (error.name === "AbortError") throw error;
    return false;
  }
  return ended;
}
