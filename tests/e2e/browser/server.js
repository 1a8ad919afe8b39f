// Serves the leak-test page from the lab's "internet" namespace: node server.js ADDRESS PORT [DIR]
// With DIR, a page opened with ?report=ID posts its result to /result?id=ID and it is written to
// DIR/ID.json (how a browser driven without a driver, Firefox here, hands back what it learned).
"use strict";
const http = require("http");
const fs = require("fs");
const path = require("path");
const [host, port] = [process.argv[2] || "203.0.113.80", Number(process.argv[3] || 8080)];
const results = process.argv[4] || null;
const page = fs.readFileSync(path.join(__dirname, "leaktest.html"));
http.createServer((req, res) => {
  const url = new URL(req.url, "http://page");
  if (req.method === "GET" && (url.pathname === "/" || url.pathname === "/leaktest.html")) {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    res.end(page);
  } else if (req.method === "POST" && url.pathname === "/result" && results && /^[A-Za-z0-9-]{1,64}$/.test(url.searchParams.get("id") || "")) {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", d => { if (body.length < (1 << 20)) body += d; });
    req.on("end", () => {
      const file = path.join(results, url.searchParams.get("id") + ".json");
      fs.writeFileSync(file + ".tmp", body);
      fs.renameSync(file + ".tmp", file);  // whole or not at all for the reader
      res.writeHead(204);
      res.end();
    });
  } else {
    res.writeHead(404);
    res.end();
  }
}).listen(port, host, () => console.log(`serving http://${host.includes(":") ? `[${host}]` : host}:${port}/`));
