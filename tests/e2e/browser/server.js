// Serves the leak-test page from the lab's "internet" namespace: node server.js ADDRESS PORT
"use strict";
const http = require("http");
const fs = require("fs");
const path = require("path");
const [host, port] = [process.argv[2] || "203.0.113.80", Number(process.argv[3] || 8080)];
const page = fs.readFileSync(path.join(__dirname, "leaktest.html"));
http.createServer((req, res) => {
  if (req.url === "/" || req.url.startsWith("/leaktest.html")) {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    res.end(page);
  } else {
    res.writeHead(404);
    res.end();
  }
}).listen(port, host, () => console.log(`serving http://${host.includes(":") ? `[${host}]` : host}:${port}/`));
