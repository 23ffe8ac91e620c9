// Renders /openapi.json with the vendored Swagger UI (a file, not an inline script:
// the page's Content-Security-Policy allows scripts from this origin only).
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The mock's certificate is from its own CA, and the try-it-out calls need a session:
    // reading the document is the point here.
    supportedSubmitMethods: [],
  });
});
