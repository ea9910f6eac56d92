// Train Tools: small browser-side helpers Gradio cannot express (loaded by the WebUI and the standalone app).
// No network requests are made from here.
(function () {
    "use strict";

    // Copy the text of an element (e.g. the `<lora:name:0.8>` line) to the clipboard.
    function copyText(text) {
        if (navigator.clipboard && window.isSecureContext) {
            return navigator.clipboard.writeText(text);
        }
        const area = document.createElement("textarea");
        area.value = text;
        document.body.appendChild(area);
        area.select();
        document.execCommand("copy");
        area.remove();
        return Promise.resolve();
    }

    window.trainToolsCopy = copyText;
})();
