// The prediction form: collects the fields, POSTs them to /predict and shows the answer.
// Served by the app itself; no outside requests.
"use strict";

(function () {
  var form = document.getElementById("predict-form");
  var button = document.getElementById("submit");
  var result = document.getElementById("result");
  var errorBox = document.getElementById("error");

  // The MLflow link: when the page is reached through a forwarded host such as
  // "<name>-5000.<domain>" (Codespaces), point at "<name>-<MLFLOW_PORT>.<domain>"; when it is
  // reached by another host name than localhost, keep that host name with the MLflow port.
  function fixMlflowLink() {
    var link = document.getElementById("mlflow-link");
    if (!link || link.getAttribute("data-derived") !== "true") return;
    var port = link.getAttribute("data-mlflow-port");
    var host = window.location.hostname;
    var forwarded = /^(.+)-(\d+)(\..+)$/.exec(host);
    if (forwarded) {
      link.href = window.location.protocol + "//" + forwarded[1] + "-" + port + forwarded[3] + "/";
      return;
    }
    var target = new URL(link.href);
    if (target.hostname === "localhost" && host && host !== "localhost" && host !== "127.0.0.1") {
      target.hostname = host;
      link.href = target.toString();
    }
  }

  // Keep the add-on fields consistent the way the data set is.
  function syncDependent(sourceName, noValue, dependentNames, dependentNoValue) {
    var source = form.elements[sourceName];
    if (!source) return;
    source.addEventListener("change", function () {
      dependentNames.forEach(function (name) {
        var el = form.elements[name];
        if (!el) return;
        if (source.value === noValue) {
          el.value = dependentNoValue;
        } else if (el.value === dependentNoValue) {
          el.value = "No";
        }
      });
    });
  }

  function collect() {
    var customer = {};
    var fields = form.querySelectorAll("[data-type]");
    Array.prototype.forEach.call(fields, function (el) {
      var type = el.getAttribute("data-type");
      var raw = el.value.trim();
      if (type === "string") {
        customer[el.name] = el.value;
      } else if (raw === "") {
        customer[el.name] = null;
      } else {
        var number = Number(raw);
        customer[el.name] = Number.isFinite(number) ? number : raw;
      }
    });
    return customer;
  }

  function clearErrors() {
    errorBox.hidden = true;
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (el) {
      el.removeAttribute("aria-invalid");
    });
    Array.prototype.forEach.call(form.querySelectorAll(".field-error"), function (el) {
      el.textContent = "";
    });
  }

  function showError(message, details) {
    result.hidden = true;
    document.getElementById("error-message").textContent = message;
    var list = document.getElementById("error-details");
    list.textContent = "";
    (details || []).forEach(function (d) {
      var item = document.createElement("li");
      item.textContent = d.field + ": " + d.problem;
      list.appendChild(item);
      var input = form.elements[d.field];
      var slot = document.getElementById("e-" + d.field);
      if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
      if (slot) slot.textContent = d.problem;
    });
    errorBox.hidden = false;
  }

  function showResult(answer, customer) {
    var p = answer.churn_probability;
    var verdict = document.getElementById("verdict");
    verdict.textContent = answer.churn ? "Likely to churn" : "Likely to stay";
    verdict.className = "verdict " + (answer.churn ? "churn" : "stay");
    document.getElementById("probability-meter").value = p;
    document.getElementById("probability-text").textContent =
      "Churn probability: " + (100 * p).toFixed(1) + "%";
    document.getElementById("result-meta").textContent =
      "Model " + answer.model + (answer.alias ? " (" + answer.alias + ")" : "") +
      " · request " + answer.request_id;
    showReasons(answer, customer);
    result.hidden = false;
  }

  // The three columns whose contributions to the log-odds push hardest towards the verdict
  // (up for "churn", down for "stay").
  function showReasons(answer, customer) {
    var box = document.getElementById("reasons");
    var list = document.getElementById("reasons-list");
    list.textContent = "";
    var why = answer.explanation;
    if (!why || !why.contributions) {
      box.hidden = true;
      return;
    }
    var direction = answer.churn ? 1 : -1;
    var pushing = Object.keys(why.contributions)
      .map(function (name) { return { name: name, value: why.contributions[name] }; })
      .filter(function (c) { return c.value * direction > 0; })
      .sort(function (a, b) { return (b.value - a.value) * direction; })
      .slice(0, 3);
    pushing.forEach(function (c) {
      var item = document.createElement("li");
      var shown = customer[c.name] === null || customer[c.name] === undefined
        ? "unknown" : String(customer[c.name]);
      item.textContent = c.name + " = " + shown + " (" + (c.value > 0 ? "+" : "") +
        c.value.toFixed(2) + " log-odds)";
      list.appendChild(item);
    });
    document.getElementById("reasons-title").textContent = answer.churn
      ? "Pushing hardest towards churn" : "Pushing hardest towards staying";
    box.hidden = pushing.length === 0;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearErrors();
    button.disabled = true;
    var model = form.elements.model.value;
    var url = form.getAttribute("data-predict-url") || "/predict";
    var customer = collect();
    var query = (model ? "?model=" + encodeURIComponent(model) + "&" : "?") + "explain=true";
    fetch(url + query, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(customer),
    })
      .then(function (response) {
        return response.json().then(
          function (body) { return { ok: response.ok, status: response.status, body: body }; },
          function () { return { ok: false, status: response.status, body: null }; }
        );
      })
      .then(function (answer) {
        if (answer.ok) {
          showResult(answer.body, customer);
        } else if (answer.body && answer.body.error) {
          showError(answer.body.error.message, answer.body.error.details);
        } else {
          showError("The server answered with status " + answer.status + ".", []);
        }
      })
      .catch(function (err) {
        showError("The API could not be reached: " + err.message, []);
      })
      .finally(function () {
        button.disabled = false;
      });
  });

  fixMlflowLink();
  syncDependent("InternetService", "No",
    ["OnlineSecurity", "OnlineBackup", "DeviceProtection", "TechSupport", "StreamingTV",
     "StreamingMovies"], "No internet service");
  syncDependent("PhoneService", "No", ["MultipleLines"], "No phone service");
})();
