// What both pages share: the API key, asked for when the gateway wants one and kept for
// this tab only, and fetch with it.
"use strict";

const KEY = "trtllm-gateway-key";

const gateway = {
  key() {
    return sessionStorage.getItem(KEY) || "";
  },

  headers(extra = {}) {
    const key = gateway.key();
    return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
  },

  // fetch() with the key; a 401 shows the key form and fails.
  async fetch(path, init = {}) {
    const response = await fetch(path, { ...init, headers: gateway.headers(init.headers) });
    if (response.status === 401) {
      document.getElementById("key-form").hidden = false;
      throw new Error("this gateway needs an API key: enter one above");
    }
    return response;
  },

  // The error an API answered with, as text.
  async error(response) {
    const body = await response.json().catch(() => null);
    const message = body && body.error && (body.error.message || body.error);
    return `${response.status}: ${message || response.statusText}`;
  },
};

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("key").value.trim());
  location.reload();
});
