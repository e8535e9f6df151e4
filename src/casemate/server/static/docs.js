"use strict";
// Offline API reference: lists the operations of /openapi.json (no CDN-hosted Swagger UI).
fetch("/openapi.json").then((r) => r.json()).then((spec) => {
  const root = document.getElementById("paths");
  root.replaceChildren();
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const h = document.createElement("h3");
      h.textContent = method.toUpperCase() + " " + path;
      const p = document.createElement("p");
      p.textContent = op.description || op.summary || "";
      root.append(h, p);
    }
  }
});
