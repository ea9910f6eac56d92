// Train Tools: browser-side helpers Gradio cannot express (loaded by the WebUI and by the standalone app).
// Everything here only fills boxes and presses buttons the Python side already has; no network requests.
(function () {
    "use strict";
    if (window.trainToolsLoaded) {
        return;
    }
    window.trainToolsLoaded = true;

    // Must match lora_ext/ui/dataset_section.py PATH_MARK: survives Gradio's upload-name cleaning.
    const PATH_MARK = "__ttd__";

    function root() {
        const app = document.querySelector("gradio-app");
        return (app && app.shadowRoot) || document;
    }

    function byId(id) {
        return root().querySelector("#" + id);
    }

    function field(id) {
        const holder = byId(id);
        return holder && holder.querySelector("textarea, input");
    }

    function setField(id, value) {
        const input = field(id);
        if (!input) {
            return;
        }
        input.value = value;
        input.dispatchEvent(new Event("input", {bubbles: true}));
    }

    function press(id) {
        const holder = byId(id);
        const button = holder && (holder.tagName === "BUTTON" ? holder : holder.querySelector("button"));
        if (button) {
            button.click();
        }
    }

    function tabVisible() {
        const tab = byId("train_tools");
        return Boolean(tab && tab.offsetParent !== null);
    }

    function splitTags(text) {
        return text.split(",").map((tag) => tag.trim()).filter((tag) => tag.length > 0);
    }

    function toggleTag(id, tag) {
        const input = field(id);
        if (!input) {
            return;
        }
        const tags = splitTags(input.value);
        const at = tags.indexOf(tag);
        if (at >= 0) {
            tags.splice(at, 1);
        } else {
            tags.push(tag);
        }
        setField(id, tags.join(", "));
    }

    // --- tag chips: click shows only images with the tag, Shift+click hides them (click the struck-through chip to
    // show them again), Ctrl+click collects it ---
    document.addEventListener("click", function (event) {
        const chip = event.target.closest && event.target.closest(".tt-chip");
        if (!chip || !chip.closest("#train_tools")) {
            return;
        }
        event.preventDefault();
        const tag = chip.dataset.tag;
        if (event.ctrlKey || event.metaKey) {
            const input = field("train_tools_tags_text");
            const tags = input ? splitTags(input.value) : [];
            if (tags.indexOf(tag) < 0) {
                tags.push(tag);
            }
            setField("train_tools_tags_text", tags.join(", "));
            return;
        }
        // A hidden tag's chip (struck through, data-hidden) shows its images again on any click.
        const hiding = event.shiftKey || chip.dataset.hidden === "1";
        toggleTag(hiding ? "train_tools_filter_negative" : "train_tools_filter_positive", tag);
        setTimeout(() => press("train_tools_apply_filter"), 0);
    }, true);

    // --- keyboard: Ctrl+Z / Ctrl+Y undo and redo in the editor, Ctrl+S saves the captions ---
    document.addEventListener("keydown", function (event) {
        if (!(event.ctrlKey || event.metaKey) || event.altKey || !tabVisible()) {
            return;
        }
        const key = event.key.toLowerCase();
        const typing = event.target && (event.target.tagName === "TEXTAREA" || event.target.tagName === "INPUT");
        if (key === "s") {
            event.preventDefault();
            press("train_tools_save");
        } else if (key === "z" && !typing) {
            event.preventDefault();
            press(event.shiftKey ? "train_tools_redo" : "train_tools_undo");
        } else if (key === "y" && !typing) {
            event.preventDefault();
            press("train_tools_redo");
        }
    });

    // --- copy buttons ---
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

    document.addEventListener("click", function (event) {
        const button = event.target.closest && event.target.closest("#train_tools_copy_token");
        if (!button) {
            return;
        }
        const input = field("train_tools_lora_token");
        if (input && input.value) {
            copyText(input.value).then(() => {
                button.classList.add("tt-copied");
                setTimeout(() => button.classList.remove("tt-copied"), 1200);
            });
        }
    }, true);

    // --- long jobs: the page only starts them; it follows them by pressing the hidden poll button (lora_ext/ui/live.py) ---
    // A poll is one short event, so a dropped connection or a sleeping laptop only skips a poll. On load the hidden
    // restore button reopens the last-used version and re-attaches to the running or last-finished job.
    const POLL_RUNNING_MS = 1500;
    const POLL_IDLE_MS = 10000; // notices a job started in another tab or through the REST API
    // The WebUI's page is large: its buttons are in the page a while before gradio listens to them, and a press
    // then is lost. Restore is pressed again until the page says it was restored (the first-step line's mark).
    const RESTORE_RETRY_MS = 2500;
    const RESTORE_TRIES = 40;
    let restoreTries = 0;
    let lastRestore = 0;
    let lastPoll = 0;

    function jobRunning() {
        const box = field("train_tools_job_seen");
        return Boolean(box && /:running$/.test(box.value));
    }

    // Once restored, always: the first-step line is drawn again without its mark by create, rename and delete.
    let restoredOnce = false;

    function pageRestored() {
        restoredOnce = restoredOnce || Boolean(root().querySelector("#train_tools_first_step [data-restored='1']"));
        return restoredOnce;
    }

    // This page among the pages open on the app: the server answers only its newest plan (common.NewestOnly).
    function identifyPage() {
        const box = field("train_tools_page_id");
        if (box && !box.value) {
            setField("train_tools_page_id", Date.now().toString(36) + Math.random().toString(36).slice(2));
        }
    }

    // gradio 3 drops an event fired while the same event still runs (a second choice while the first version is
    // being shown). When the views (the "shown" box) or the picker still disagree with the selection a moment
    // later, show it again / take the picker's choice again (lora_ext/ui/selection.py).
    const HEAL_AFTER_MS = 2000;
    let viewsDifferSince = 0;
    let pickerDiffersSince = 0;
    let lastHeal = 0;

    function parsed(text) {
        try {
            const value = JSON.parse(text || "");
            return Array.isArray(value) && value.length === 2 ? value : null;
        } catch (error) {
            return null;
        }
    }

    function healSelection(now) {
        const selection = field("train_tools_selection");
        const shown = field("train_tools_shown");
        const project = field("train_tools_project");
        const version = field("train_tools_version");
        if (!selection || !shown || !pageRestored()) {
            return;
        }
        const selected = parsed(selection.value);
        const viewsDiffer = selection.value !== shown.value;
        const typing = Boolean(project && version) && [project, version].includes(root().activeElement || document.activeElement);
        const pickerDiffers = Boolean(selected && project && version) && !typing &&
            (selected[0] !== project.value || selected[1] !== version.value);
        viewsDifferSince = viewsDiffer ? viewsDifferSince || now : 0;
        pickerDiffersSince = pickerDiffers ? pickerDiffersSince || now : 0;
        if (now - lastHeal < HEAL_AFTER_MS) {
            return;
        }
        if (pickerDiffersSince && now - pickerDiffersSince >= HEAL_AFTER_MS) {
            lastHeal = now;
            press("train_tools_reselect");
        } else if (viewsDifferSince && now - viewsDifferSince >= HEAL_AFTER_MS) {
            lastHeal = now;
            press("train_tools_reshow");
        }
    }

    setInterval(function () {
        if (!byId("train_tools_poll")) {
            return;
        }
        identifyPage();
        healSelection(Date.now());
        const now = Date.now();
        if (!pageRestored() && restoreTries < RESTORE_TRIES) {
            if (now - lastRestore >= RESTORE_RETRY_MS) {
                restoreTries += 1;
                lastRestore = lastPoll = now;
                press("train_tools_restore");
            }
            return;
        }
        const running = jobRunning();
        if ((!running && document.hidden) || now - lastPoll < (running ? POLL_RUNNING_MS : POLL_IDLE_MS)) {
            return;
        }
        lastPoll = now;
        press("train_tools_poll");
    }, 500);

    // --- the job bar at the top of the tab: its button shows the job's section (selecting the job's version first
    // when the page shows another one; lora_ext/ui/live.py job_bar and select_job) ---
    document.addEventListener("click", function (event) {
        const jump = event.target.closest && event.target.closest(".tt-jobbar .tt-jump");
        if (!jump || !jump.closest("#train_tools")) {
            return;
        }
        event.preventDefault();
        const bar = jump.closest(".tt-jobbar");
        const selection = field("train_tools_selection");
        if (bar.dataset.selection && selection && selection.value !== bar.dataset.selection) {
            press("train_tools_show_job");
        }
        // Again until the job's version is shown and its views have settled (the section moves as they grow or
        // shrink; on a busy machine that takes seconds), at most 30 s, and never against the user's own scrolling.
        const started = Date.now();
        let shownSince = 0;
        function stop() {
            clearInterval(timer);
            ["wheel", "touchmove", "keydown"].forEach(function (name) {
                window.removeEventListener(name, stop, true);
            });
        }
        function follow() {
            const section = byId(bar.dataset.section);
            if (section) {
                section.scrollIntoView({block: "start"});
            }
            const shown = field("train_tools_shown");
            if (!bar.dataset.selection || (shown && shown.value === bar.dataset.selection)) {
                shownSince = shownSince || Date.now();
            }
            if ((shownSince && Date.now() - shownSince > 2000) || Date.now() - started > 30000) {
                stop();
            }
        }
        const timer = setInterval(follow, 400);
        ["wheel", "touchmove", "keydown"].forEach(function (name) {
            window.addEventListener(name, stop, true);
        });
        follow();
    }, true);

    // The bar stays in view: once its place in the tab scrolls above the window it is pinned to the window's top
    // (style.css .tt-pinned), at its place's width; its place keeps the bar's height so nothing below moves.
    function pinJobBar() {
        const holder = byId("train_tools_job_bar");
        const bar = holder && holder.querySelector(".tt-jobbar");
        const tab = byId("train_tools");
        if (!holder || !tab) {
            return;
        }
        const place = holder.getBoundingClientRect();
        const pin = Boolean(bar) && tabVisible() && place.top < 0 && tab.getBoundingClientRect().bottom > 80;
        holder.classList.toggle("tt-pinned", pin);
        holder.style.setProperty("--tt-bar-left", place.left + "px");
        holder.style.setProperty("--tt-bar-width", place.width + "px");
        holder.style.minHeight = pin ? bar.getBoundingClientRect().height + "px" : "";
    }

    window.addEventListener("scroll", pinJobBar, {passive: true});
    window.addEventListener("resize", pinJobBar);
    setInterval(pinJobBar, 500); // the bar is drawn again on each poll

    // --- folders dropped on the drop zone: send every file, its folders folded into its name ---
    function readEntries(reader) {
        return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    }

    // Gradio's upload keeps only letters, digits and "._- " of a name; any other character travels as
    // __ttc<hex>__ and lora_ext/ui/dataset_section.py decode_upload_name puts it back ("coffee (1).jpg").
    function encodeName(name) {
        let out = "";
        for (const char of name) {
            out += /[\p{L}\p{N}._\- ]/u.test(char) ? char : "__ttc" + char.codePointAt(0).toString(16) + "__";
        }
        return out;
    }

    function uploadName(folders, name) {
        return folders.concat([name]).map(encodeName).join(PATH_MARK);
    }

    function renamed(file, name) {
        return new File([file], name, {type: file.type, lastModified: file.lastModified});
    }

    async function collect(entry, folders, out) {
        if (entry.isFile) {
            const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
            out.push(renamed(file, uploadName(folders, file.name)));
            return;
        }
        const reader = entry.createReader();
        for (;;) {
            const batch = await readEntries(reader); // readEntries returns at most 100 entries per call
            if (!batch.length) {
                break;
            }
            for (const child of batch) {
                await collect(child, folders.concat([entry.name]), out);
            }
        }
    }

    document.addEventListener("drop", function (event) {
        const zone = event.target.closest && event.target.closest("#train_tools_drop");
        const items = event.dataTransfer && event.dataTransfer.items;
        if (!zone || !items) {
            return;
        }
        const entries = Array.from(items).map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
        if (!entries.some((entry) => entry.isDirectory || encodeName(entry.name) !== entry.name)) {
            return; // plain files and zips with plain names: Gradio's own upload handles them
        }
        event.preventDefault();
        event.stopPropagation();
        const files = [];
        Promise.all(entries.map((entry) => collect(entry, [], files))).then(() => {
            const input = zone.querySelector("input[type=file]");
            if (!input) {
                return;
            }
            const transfer = new DataTransfer();
            files.forEach((file) => transfer.items.add(file));
            input.files = transfer.files;
            input.dispatchEvent(new Event("change", {bubbles: true}));
        });
    }, true);

    // Files picked with the file dialog: the same renaming, before Gradio's own change handler reads them.
    document.addEventListener("change", function (event) {
        const input = event.target;
        if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.closest("#train_tools_drop")) {
            return;
        }
        const files = Array.from(input.files || []);
        if (!files.some((file) => encodeName(file.name) !== file.name)) {
            return; // plain names, or already renamed (the dispatch below comes back here)
        }
        event.stopImmediatePropagation();
        const transfer = new DataTransfer();
        files.forEach((file) => transfer.items.add(renamed(file, encodeName(file.name))));
        input.files = transfer.files;
        input.dispatchEvent(new Event("change", {bubbles: true}));
    }, true);

    // --- standalone app: the texts gradio draws itself (upload hints, tab buttons) in the page's language ---
    // The Python side translates labels and status lines (lora_ext/ui/i18n.py); gradio's own texts follow the
    // browser's language, so they are relabelled here by exact text, as the WebUI's localization does with
    // localizations/ja_JP.json. window.trainToolsPageText (English → Japanese) is set by lora_ext/ui/app.py only.
    const PAGE_TEXT = window.trainToolsPageText || null;
    const PAGE_TEXT_BACK = PAGE_TEXT ? Object.fromEntries(Object.entries(PAGE_TEXT).map(([en, ja]) => [ja, en])) : {};

    function pageInJapanese() {
        const checked = root().querySelector("#train_tools_language input:checked");
        return Boolean(checked && checked.value !== "English");
    }

    function relabelPage() {
        const table = pageInJapanese() ? PAGE_TEXT : PAGE_TEXT_BACK;
        const walker = document.createTreeWalker(root(), NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const text = node.nodeValue.trim();
            if (text && Object.prototype.hasOwnProperty.call(table, text)) {
                node.nodeValue = node.nodeValue.replace(text, table[text]);
            }
        }
    }

    if (PAGE_TEXT) {
        // At once when gradio adds a text (a toast's "Warning" title lives a few seconds), and now and then.
        let pending = false;
        const relabelSoon = function () {
            if (pending || !byId("train_tools_language")) {
                return;
            }
            pending = true;
            requestAnimationFrame(function () {
                pending = false;
                relabelPage();
            });
        };
        new MutationObserver(relabelSoon).observe(document.documentElement, {childList: true, subtree: true, characterData: true});
        setInterval(relabelSoon, 700);
    }
})();
