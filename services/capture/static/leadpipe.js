/*! leadpipe website snippet: anonymous id, page views with UTM attribution, identify.
 * <script src="https://capture.example.com/static/leadpipe.js" data-key="PUBLISHABLE_KEY"
 *         data-endpoint="https://capture.example.com" async></script>
 * Forms marked data-leadpipe-form ("identify", the default, or "form_submit") identify on submit.
 */
(function (window, document) {
  "use strict";
  if (window.leadpipe && window.leadpipe.anonymousId) return; // loaded twice: keep the first

  var script = document.currentScript;
  var endpoint = ((script && script.getAttribute("data-endpoint")) ||
    (script && script.src ? new URL(script.src).origin : "")).replace(/\/+$/, "");
  var key = (script && script.getAttribute("data-key")) || "";
  var COOKIE = "lp_aid";
  var YEAR = 365 * 24 * 3600;
  var UTM_KEY = "lp_utm";
  var UTM = ["utm_source", "utm_medium", "utm_campaign"];
  var CONTACT = {
    email: "email", work_email: "email", e_mail: "email",
    first_name: "first_name", firstname: "first_name", given_name: "first_name",
    last_name: "last_name", lastname: "last_name", surname: "last_name",
    company: "company", organisation: "company", organization: "company",
    job_title: "job_title", jobtitle: "job_title", title: "job_title", role: "job_title",
    phone: "phone", telephone: "phone", country: "country"
  };
  var CONSENT = { consent: 1, newsletter: 1, marketing_email: 1, opt_in: 1 };

  function randomId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes); // works outside secure contexts, unlike randomUUID
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function anonymousId() {
    var id = readCookie(COOKIE);
    if (!id || !/^[0-9a-zA-Z-]{8,64}$/.test(id)) id = randomId();
    // Rewritten on every page so the year counts from the last visit.
    document.cookie = COOKIE + "=" + id + "; Max-Age=" + YEAR + "; Path=/; SameSite=Lax" +
      (location.protocol === "https:" ? "; Secure" : "");
    return id;
  }

  function storage() {
    try { return window.sessionStorage; } catch (e) { return null; }
  }

  // The landing page's UTM parameters, kept for the session so later pages stay attributed.
  function attribution() {
    var query = new URLSearchParams(location.search);
    var found = {};
    var any = false;
    UTM.forEach(function (name) {
      var value = query.get(name);
      if (value) { found[name] = value.slice(0, 256); any = true; }
    });
    var store = storage();
    if (any) {
      if (store) store.setItem(UTM_KEY, JSON.stringify(found));
      return found;
    }
    try { return (store && JSON.parse(store.getItem(UTM_KEY) || "{}")) || {}; } catch (e) { return {}; }
  }

  var aid = anonymousId();
  var source = attribution();
  source.channel = "web";

  function send(type, contact, properties, consent) {
    var body = {
      event_id: "web-" + randomId(),
      type: type,
      occurred_at: new Date().toISOString(),
      anonymous_id: aid,
      contact: contact || {},
      source: source,
      consent: consent || {},
      properties: properties || {}
    };
    // keepalive: the request outlives the page when a form submit navigates away.
    return window.fetch(endpoint + "/v1/events", {
      method: "POST",
      keepalive: true,
      credentials: "omit",
      headers: { "Content-Type": "application/json", "X-API-Key": key },
      body: JSON.stringify(body)
    }).catch(function () { /* never break the page */ });
  }

  function split(traits) {
    var contact = {};
    var properties = {};
    var consent = {};
    Object.keys(traits || {}).forEach(function (name) {
      var value = traits[name];
      var normal = name.toLowerCase().replace(/[^0-9a-z]+/g, "_");
      if (value === null || value === undefined || value === "") return;
      if (CONTACT[normal] && !contact[CONTACT[normal]]) contact[CONTACT[normal]] = String(value);
      else if (CONSENT[normal]) consent.marketing_email = value === true || value === "on" || value === "true";
      else properties[name] = value;
    });
    return { contact: contact, properties: properties, consent: consent };
  }

  function identify(traits, type) {
    var parts = split(traits);
    parts.properties.page_url = location.href;
    return send(type || "identify", parts.contact, parts.properties, parts.consent);
  }

  function page() {
    return send("page_view", {}, {
      url: location.href,
      path: location.pathname,
      referrer: document.referrer || null,
      title: document.title || null
    });
  }

  // Only contact fields and the consent box leave the page; free text and passwords stay.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || !form.hasAttribute || !form.hasAttribute("data-leadpipe-form")) return;
    var traits = {};
    Array.prototype.forEach.call(form.elements, function (field) {
      if (!field.name || field.type === "password" || field.disabled) return;
      var normal = field.name.toLowerCase().replace(/[^0-9a-z]+/g, "_");
      if (CONSENT[normal] && field.type === "checkbox") traits[normal] = field.checked;
      else if (CONTACT[normal]) traits[normal] = field.value;
    });
    var parts = split(traits);
    if (!parts.contact.email) return;
    var mode = form.getAttribute("data-leadpipe-form") === "form_submit" ? "form_submit" : "identify";
    send(mode, parts.contact, { page_url: location.href, form: form.id || form.getAttribute("name") || null },
      parts.consent);
  }, true);

  window.leadpipe = {
    anonymousId: function () { return aid; },
    identify: function (traits) { return identify(traits, "identify"); },
    track: function (type, properties) { return send(type, {}, properties); },
    page: page
  };
  page();
})(window, document);
