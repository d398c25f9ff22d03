// Latchkey's API-key dashboard: the Copy button beside a key shown once. The page works
// without this file (the key sits in a readonly input); served from /assets/ under the
// pages' CSP (script-src 'self', nothing inline).
"use strict";
for (const button of document.querySelectorAll("button[data-copy]")) {
  const input = document.getElementById(button.dataset.copy);
  const status = document.getElementById(button.dataset.status);
  if (!input) continue;
  const say = (text) => { if (status) status.textContent = text; };
  button.hidden = false;
  say("Copy the key now, or select it.");
  button.addEventListener("click", async () => {
    input.focus();
    input.select();
    try {
      await navigator.clipboard.writeText(input.value);
      button.textContent = "Copied";
      say("The key is on your clipboard.");
    } catch (e) {
      say("The browser refused to copy: the key is selected, copy it with your keyboard.");
    }
  });
}
