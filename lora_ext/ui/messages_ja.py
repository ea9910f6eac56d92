"""Japanese status lines: English templates → Japanese (``lora_ext.ui.i18n`` renders them).

The code builds every status line in English with f-strings; each entry here is
that line with its values as ``{name}`` placeholders (``{name!t}``: the value is a
line of its own and translated too). A line made of parts joined by `` · `` is
translated part by part, so a part is an entry of its own. Lines without
placeholders also go into ``localizations/ja_JP.json``.

``tests/test_ui_i18n_status.py`` finds every line the code can show (the first
argument of ``message`` and ``progress_html``, the trainer's phase lines, the
errors' messages) and fails when one has no entry here.
"""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    # model header (lora_ext/ui/tab.py)
    "**Model:** none — {error!t}": "**モデル:** なし — {error}",
    "**Model:** {name} — *demo model: tiny, random weights, generated locally; for trying the flow, not for real LoRAs* ({details!t})": (  # noqa: E501
        "**モデル:** {name} — *デモモデル: ローカルで生成した小さなランダム重みのモデルです。流れを試すためのもので、"
        "本物の LoRA には使えません* ({details})"
    ),
    "**Model:** {name} ({details!t})": "**モデル:** {name} ({details})",
    "family `{family}`, prediction `{prediction}`, naming `{naming}`, hash `{hash}`": (
        "系統 `{family}`、予測 `{prediction}`、命名 `{naming}`、ハッシュ `{hash}`"
    ),
    "family `{family}`, prediction `{prediction}`, naming `{naming}`": "系統 `{family}`、予測 `{prediction}`、命名 `{naming}`",
    # the training objective (lora_ext/training/objective.py)
    "Training objective: {objective!t} (as the model)": "学習の目的: {objective}（モデルどおり）",
    "Training objective: {objective!t} — the model is {model!t}": "学習の目的: {objective} — モデルは {model}",
    "ε-prediction": "ε 予測",
    "v-prediction": "v 予測",
    "ε-prediction, zero-terminal-SNR schedule": "ε 予測、ゼロ終端 SNR のスケジュール",
    "v-prediction, zero-terminal-SNR schedule": "v 予測、ゼロ終端 SNR のスケジュール",
    "zero terminal SNR needs v-prediction: at the last timestep an ε-prediction model sees only noise": (
        "ゼロ終端 SNR には v 予測が必要です: 最後のタイムステップでは ε 予測のモデルにはノイズしか見えません"
    ),
    "set prediction to v, or zero_terminal_snr to off": "prediction を v にするか、zero_terminal_snr を off にしてください",
    "the loaded model is {model!t}; training it as {chosen!t} gives a LoRA that does not match it": (
        "読み込んだモデルは {model} です。{chosen} として学習すると、モデルに合わない LoRA になります"
    ),
    "set prediction and zero_terminal_snr to auto, or turn on override_detection": (
        "prediction と zero_terminal_snr を auto にするか、override_detection をオンにしてください"
    ),
    "conv_rank and loraplus_lr_ratio must not be negative": "conv_rank と loraplus_lr_ratio は負にできません",
    "lokr_factor must be -1 or at least 1, not {value}": "lokr_factor は -1 か 1 以上にしてください（{value} ではなく）",
    # memory (lora_ext/training/memory.py)
    "Memory: {estimate!t}; {free} GiB free": "メモリ: {estimate}、空き {free} GiB",
    "Memory: {estimate!t}; {free} GiB free — too little: set memory_mode to auto or lower the resolution": (
        "メモリ: {estimate}、空き {free} GiB — 足りません: memory_mode を auto にするか解像度を下げてください"
    ),
    "≈ {total} GiB peak on {device} (model {held}, {rest!t})": "{device} で最大 ≈ {total} GiB（モデル {held}、{rest}）",
    "≈ {total} GiB peak on cpu (this process now {held}, {rest!t})": (
        "cpu で最大 ≈ {total} GiB（このプロセスの現在 {held}、{rest}）"
    ),
    "LoRA and optimizer {network}, activations {activations}, working {working}": (
        "LoRA とオプティマイザ {network}、活性 {activations}、作業用 {working}"
    ),
    "memory auto: the settings fit ({needed} GiB more of {available} GiB free)": (
        "メモリ auto: 今の設定で収まります（空き {available} GiB のうち {needed} GiB を追加で使用）"
    ),
    "memory auto: turned on {savings} to fit ({needed} GiB more of {available} GiB free)": (
        "メモリ auto: 収めるために {savings} をオンにしました（空き {available} GiB のうち {needed} GiB を追加で使用）"
    ),
    "memory auto: even with {savings} the run needs {needed} GiB more of {available} GiB free; lower the "
    "resolution or the batch size": (
        "メモリ auto: {savings} を使っても空き {available} GiB に対して {needed} GiB 必要です。解像度か"
        "バッチサイズを下げてください"
    ),
    # optimizers (lora_ext/training/optim.py)
    "the {optimizer} optimizer ({package}) needs a CUDA GPU; this model runs on {device}": (
        "{optimizer} オプティマイザ（{package}）には CUDA GPU が必要です。このモデルは {device} で動いています"
    ),
    "choose AdamW or Adafactor": "AdamW か Adafactor を選んでください",
    "the fused backward pass works with the Adafactor optimizer only": (
        "fused backward pass は Adafactor オプティマイザでのみ使えます"
    ),
    "choose Adafactor": "Adafactor を選んでください",
    "the fused backward pass steps each parameter during backward, so it cannot accumulate gradients": (
        "fused backward pass は逆伝播中にパラメータごとに更新するため、勾配を蓄積できません"
    ),
    "set gradient_accumulation to 1": "gradient_accumulation を 1 にしてください",
    "the fused backward pass cannot unscale fp16 gradients": "fused backward pass では fp16 の勾配を戻せません",
    "use bf16": "bf16 を使ってください",
    "the fused backward pass runs in one process only": "fused backward pass は 1 プロセスでのみ動きます",
    "turn off fused_backward": "fused_backward をオフにしてください",
    # errors: the one line of a LoraExtError is its message and its hint in parentheses
    "{message!t} ({hint!t})": "{message}（{hint}）",
    "Unexpected error: {kind}: {text} (details in the console)": "予期しないエラー: {kind}: {text}（詳細はコンソールに）",
    # project / version (lora_ext/ui/projects.py)
    "Created project {name}": "プロジェクト {name} を作成しました",
    "Renamed {old} → {new}": "{old} を {new} に名前変更しました",
    "Copied {old} → {new}": "{old} を {new} に複製しました",
    "Copied {old} → {new} (dataset and settings)": "{old} を {new} に複製しました（データセットと設定）",
    "Created version {name}": "バージョン {name} を作成しました",
    "Move project {name} with all its versions to the trash?": "プロジェクト {name} をすべてのバージョンごとゴミ箱へ移動しますか？",
    "Move version {name} to the trash?": "バージョン {name} をゴミ箱へ移動しますか？",
    "Moved {name} to the trash: {where}": "{name} をゴミ箱へ移動しました: {where}",
    "Create a project first: type a name above and press Create project.": (
        "まずプロジェクトを作成してください: 上に名前を入力して「プロジェクトを作成」を押します。"
    ),
    "No project is selected.": "プロジェクトが選択されていません。",
    "create or pick a project first": "先にプロジェクトを作成するか選択してください",
    "Project {name} has no version selected.": "プロジェクト {name} のバージョンが選択されていません。",
    "create or pick a version": "バージョンを作成するか選択してください",
    "There is no project called {name}.": "{name} というプロジェクトはありません。",
    "A {kind!t} called {name} already exists.": "{name} という{kind}は既にあります。",
    "choose another name": "別の名前を選んでください",
    "Project {project} has no version called {name}.": "プロジェクト {project} に {name} というバージョンはありません。",
    "The {kind!t} is empty.": "{kind}が空です。",
    "type a name": "名前を入力してください",
    "The {kind!t} {name} is not allowed.": "{kind} {name} は使えません。",
    "choose a name with letters or digits": "文字か数字を含む名前にしてください",
    "The {kind!t} {name} starts with a dot, which hides it.": "{kind} {name} はドットで始まるため隠れてしまいます。",
    "remove the dot": "ドットを削除してください",
    "The {kind!t} {name} contains a path separator (/ or \\).": "{kind} {name} にパス区切り（/ または \\）が含まれています。",
    "remove the slash": "スラッシュを削除してください",
    "project name": "プロジェクト名",
    "version name": "バージョン名",
    "project": "プロジェクト",
    "folder name": "フォルダ名",
    "file name": "ファイル名",
    "name": "名前",
    "version": "バージョン",
    # dataset (lora_ext/ui/dataset_section.py, lora_ext/dataset/ingest.py)
    "{added} image(s) added, {skipped} skipped": "{added} 枚の画像を追加、{skipped} 件をスキップ",
    "{added} image(s) added, {skipped} skipped, {notices} notice(s)": (
        "{added} 枚の画像を追加、{skipped} 件をスキップ、{notices} 件のお知らせ"
    ),
    "Repeat folders: {folders}": "繰り返しフォルダ: {folders}",
    "Skipped": "スキップ",
    "Why": "理由",
    "Added: {names}": "追加: {names}",
    "Notices ({count})": "お知らせ（{count}）",
    "{name}: {notice!t}": "{name}: {notice}",
    "duplicate of {name}, skipped": "{name} と重複のためスキップ",
    "caption without a matching image": "対応する画像のないキャプション",
    "renamed to {name}": "{name} に名前変更",
    "{first} used; {others} ignored": "{first} を使用、{others} は無視",
    "its caption is not UTF-8 text and was not imported": "キャプションが UTF-8 テキストではないため取り込みませんでした",
    "could not be written ({reason}); nothing was kept": "書き込めませんでした（{reason}）。何も保存されていません",
    "the file is larger than {size} MB": "ファイルが {size} MB より大きい",
    "the file is larger than {size} MB once unpacked": "展開すると {size} MB より大きい",
    "zips inside a zip are not opened; unzip it first": "zip の中の zip は開きません。先に展開してください",
    "Nothing to add.": "追加するものがありません。",
    "drop images, folders or zips on the drop zone": "画像・フォルダ・zip をドロップ領域にドロップしてください",
    "The caption editor has unsaved changes.": "キャプションエディタに未保存の変更があります。",
    "save or undo them before adding images": "画像を追加する前に保存するか元に戻してください",
    "save or undo them before auto-tagging": "自動タグ付けの前に保存するか元に戻してください",
    "save them first: training reads the files": "先に保存してください: 学習はファイルを読み込みます",
    # tagger (lora_ext/ui/tagger_section.py)
    "Tagging: {done}/{total} images": "タグ付け中: {done}/{total} 枚",
    "{rate} images/s": "{rate} 枚/秒",
    "ETA {time}": "残り {time}",
    "Loading the tagger…": "タガーを読み込み中…",
    "Auto-tagging finished": "自動タグ付けが完了しました",
    "Cancelled": "キャンセルしました",
    "Tagged {tagged} of {total} image(s) in {seconds} s ({rate} images/s); {changed} caption(s) written, {kept} kept, {skipped} skipped": (  # noqa: E501
        "{total} 枚中 {tagged} 枚を {seconds} 秒でタグ付け（{rate} 枚/秒）。キャプション {changed} 件を書き込み、"
        "{kept} 件は維持、{skipped} 件をスキップ"
    ),
    "Cancelled: images not reached yet keep their captions.": "キャンセルしました: まだ処理していない画像のキャプションはそのままです。",
    "Cancelling…": "キャンセル中…",
    "Nothing is running.": "実行中のものはありません。",
    "Tagger model unloaded.": "タガーモデルを解放しました。",
    "{count} model folder(s) in {folder}.": "{folder} に {count} 個のモデルフォルダ。",
    "{count} model folder(s) in {folder}; {model} is no longer there, so {picked} is selected.": (
        "{folder} に {count} 個のモデルフォルダ。{model} が無くなったため {picked} を選択しました。"
    ),
    "No tagger model is selected.": "タガーモデルが選択されていません。",
    "pick one in the model list": "モデル一覧から選んでください",
    # editor (lora_ext/ui/editor_section.py, lora_ext/dataset/editor.py)
    "{count} images, {tags} tags": "{count} 枚、{tags} タグ",
    "{count} unsaved": "未保存 {count} 件",
    "saved": "保存済み",
    "undo: {label!t}": "元に戻す: {label}",
    "Showing {shown} of {count} images": "{count} 枚中 {shown} 枚を表示",
    "Showing {shown} of {count} images (filtered from {total})": "{count} 枚中 {shown} 枚を表示（全 {total} 枚から絞り込み）",
    "No tags yet.": "まだタグがありません。",
    "+{count} more": "ほか {count} 件",
    "Click: show only": "クリック: これだけ表示",
    "Shift+click: hide (click the struck-through chip to show again)": (
        "Shift+クリック: 隠す（取り消し線のチップをクリックで再表示）"
    ),
    "Ctrl+click: put in the tag box": "Ctrl+クリック: タグ欄に入れる",
    "Ctrl+Z / Ctrl+Y: undo / redo": "Ctrl+Z / Ctrl+Y: 元に戻す / やり直す",
    "Ctrl+S: save": "Ctrl+S: 保存",
    "{label!t}: {count} image(s) changed": "{label}: {count} 枚を変更",
    "undid {label!t}": "元に戻しました: {label}",
    "redid {label!t}": "やり直しました: {label}",
    "nothing to undo": "元に戻す操作はありません",
    "nothing to redo": "やり直す操作はありません",
    "saved {count} caption(s), backup #{backup}": "キャプション {count} 件を保存（バックアップ #{backup}）",
    "add {tags}": "{tags} を追加",
    "remove {tags}": "{tags} を削除",
    "rename {old} → {new}": "{old} → {new} に名前変更",
    "replace {old} → {new}": "{old} → {new} に置換",
    "remove duplicates": "重複を削除",
    "sort by {key!t}": "{key}で並べ替え",
    "trigger first {words}": "トリガーワード {words} を先頭に",
    "truncate to {count} tokens": "{count} トークンに切り詰め",
    "caption of {name}": "{name} のキャプション",
    "{name} is no longer in this version.": "{name} はこのバージョンにもうありません。",
    "click an image in the gallery": "ギャラリーの画像をクリックしてください",
    "click an image in the gallery first": "先にギャラリーの画像をクリックしてください",
    "No image is selected.": "画像が選択されていません。",
    "The caption of {name} changed; the box keeps your text, not applied yet (Apply caption asks first).": (
        "{name} のキャプションが変わりました。入力欄のあなたの文章はまだ反映されていません"
        "（「キャプションを反映」は先に確認します）。"
    ),
    "The caption of {name} changed since it was put in this box (now: {now}). Nothing was applied: press Apply caption again to replace it with the box's text.": (  # noqa: E501
        "{name} のキャプションはこの欄に入れた後に変わりました（現在: {now}）。何も反映していません: "
        "入力欄の文章で置き換えるには「キャプションを反映」をもう一度押してください。"
    ),
    "The search text is empty.": "検索する文字列が空です。",
    "type what to replace": "置換する文字列を入力してください",
    "No tags given.": "タグが指定されていません。",
    "type tags separated by commas, or Ctrl+click chips": "カンマ区切りでタグを入力するか、チップを Ctrl+クリックしてください",
    "No tags are selected to replace in.": "置換対象のタグが選択されていません。",
    "select tags in the filter first": "先にフィルタでタグを選択してください",
    "(no caption)": "（キャプションなし）",
    # train (lora_ext/ui/train_section.py, lora_ext/app/training.py, lora_ext/training/)
    "Ready to train on the loaded model.": "読み込み中のモデルで学習できます。",
    "Training is not possible: {reasons!t}": "学習できません: {reasons}",
    "no checkpoint is loaded": "チェックポイントが読み込まれていません",
    "Pick a project and version to see the number of steps.": "プロジェクトとバージョンを選ぶとステップ数が表示されます。",
    "{images} images × repeats = {samples} samples × {epochs} epochs / batch {batch} = {total} steps": (
        "{images} 枚 × 繰り返し = {samples} サンプル × {epochs} エポック / バッチ {batch} = {total} ステップ"
    ),
    "{images} images × repeats + regularisation = {samples} samples × {epochs} epochs / batch {batch} = {total} steps": (
        "{images} 枚 × 繰り返し + 正則化画像 = {samples} サンプル × {epochs} エポック / バッチ {batch} = {total} ステップ"
    ),
    "{images} images, {samples} samples per epoch; max steps {steps}": (
        "{images} 枚、1 エポック {samples} サンプル。最大ステップ数 {steps}"
    ),
    "≈ {time!t} on this machine": "このマシンで約 {time}",
    "{hours} h {minutes} min": "{hours} 時間 {minutes} 分",
    "{minutes} min": "{minutes} 分",
    "auto picked the {name} preset: this is the demo model": "auto は {name} プリセットを選びました: デモモデルのため",
    "auto picked the {name} preset: this machine has no GPU": "auto は {name} プリセットを選びました: このマシンに GPU がないため",
    "auto picked the {name} preset for this {family} model": "auto はこの {family} モデル向けに {name} プリセットを選びました",
    "This run takes over an hour here ({estimate!t}).": "この学習はここでは 1 時間を超えます（{estimate}）。",
    "This run takes over an hour here ({estimate!t}). Shorten it most with {shortcuts}.": (
        "この学習はここでは 1 時間を超えます（{estimate}）。最も短くなるのは {shortcuts} です。"
    ),
    "Training: starting…": "学習: 開始中…",
    "Training: {text!t}": "学習: {text}",
    "Starting…": "開始中…",
    "step {step}/{total}": "ステップ {step}/{total}",
    "epoch {epoch}/{total}": "エポック {epoch}/{total}",
    "loss {loss} (smoothed {smoothed})": "損失 {loss}（平滑化 {smoothed}）",
    "lr {lr}": "学習率 {lr}",
    "{rate} it/s": "{rate} it/秒",
    "Training: step {step}/{total}": "学習: ステップ {step}/{total}",
    "training step {step}/{total}": "学習ステップ {step}/{total}",
    "scanning the dataset": "データセットを走査中",
    "scanning the dataset: {count} images": "データセットを走査中: {count} 枚",
    "caching latents": "潜在表現をキャッシュ中",
    "caching latents {done}/{total}": "潜在表現をキャッシュ中 {done}/{total}",
    "rendering preview {number}/{count} (sampler step {step}/{steps})": (
        "プレビュー {number}/{count} を生成中（サンプラーのステップ {step}/{steps}）"
    ),
    "saving {name} ({number}/{count})": "{name} を保存中（{number}/{count}）",
    "saved {name} ({number}/{count})": "{name} を保存しました（{number}/{count}）",
    "saved training state at step {step}": "ステップ {step} の学習状態を保存しました",
    "validation loss {loss} at step {step} ({source!t})": "ステップ {step} の検証損失 {loss}（{source}）",
    "held-out images": "学習から外した画像",
    "training images (none held out)": "学習画像（外した画像なし）",
    "early stop after step {step}: {reason!t}": "ステップ {step} の後で早期終了: {reason}",
    "the validation loss has not improved for {count} validations; keeping epoch {epoch} (step {step}, validation "
    "loss {loss})": "検証損失が {count} 回続けて改善しませんでした。エポック {epoch}（ステップ {step}、検証損失 {loss}）を残します",
    "resuming at step {step} of {total}": "{total} ステップ中 {step} から再開",
    "skipped unreadable image {path}: {reason!t}": "読めない画像 {path} をスキップ: {reason}",
    "Training failed: {line!t}": "学習に失敗しました: {line}",
    "Finished: {steps} steps, final loss {loss} → {path}": "完了: {steps} ステップ、最終損失 {loss} → {path}",
    "Cancelled at step {step}": "ステップ {step} でキャンセルしました",
    "Cancelled at step {step}; Resume continues from the state in {folder}": (
        "ステップ {step} でキャンセルしました。「再開」で {folder} の状態から続けます"
    ),
    "Skipped {path}: {reason!t}": "{path} をスキップ: {reason}",
    "Stopping after the current step…": "現在のステップの後で停止します…",
    # result and generate (lora_ext/ui/result_section.py, lora_ext/ui/app.py, lora_ext/app/results.py)
    # the epochs × weights grid (lora_ext/ui/result_section.py, lora_ext/app/grid.py, lora_ext/grid/)
    # A cell's caption (the gallery, the progress line): the base model, or a saved file at a weight.
    "base model": "ベースモデル",
    "{label!t} @ {weight}": "{label} @ {weight}",
    "Grid: {text!t}": "グリッド: {text}",
    "cell {number}/{total}: {what!t} (sampler step {step}/{steps})": (
        "セル {number}/{total}: {what}（サンプラーのステップ {step}/{steps}）"
    ),
    "composing the grid": "グリッドを組み立て中",
    "Grid of {rows} × {columns}: {count} images in {elapsed}": "{rows} × {columns} のグリッド: {count} 枚を {elapsed} で生成",
    "Cancelled after {done} of {total} images": "{total} 枚中 {done} 枚でキャンセルしました",
    "Saved the grid: {path}": "グリッドを保存しました: {path}",
    "Grid: {files} files × {weights} weights": "グリッド: {files} ファイル × {weights} ウェイト",
    "{images} images × {steps} steps": "{images} 枚 × {steps} ステップ",
    "the time is known after the first image": "時間は最初の 1 枚の後にわかります",
    "No grid is being rendered.": "生成中のグリッドはありません。",
    "Stopping the grid…": "グリッドを止めています…",
    "Choose a file to keep.": "残すファイルを選んでください。",
    "Kept {source} as {target}: <lora:{name}:0.8> (the earlier files are unchanged)": (
        "{source} を {target} として残しました: <lora:{name}:0.8>（前のファイルはそのまま）"
    ),
    "{name} is not a file of {project}/{version}'s runs.": "{name} は {project}/{version} の学習のファイルではありません。",
    "There is no LoRA file to put in the grid.": "グリッドに入れる LoRA ファイルがありません。",
    "The grid prompt is empty.": "グリッドのプロンプトが空です。",
    "The grid's {name} must be at least {low}, not {value}.": "グリッドの {name} は {low} 以上にしてください（{value} ではなく）。",
    "write numbers such as 0, 0.4, 0.7, 1": "0, 0.4, 0.7, 1 のように数値を書いてください",
    # the run's validation loss and the suggested epoch (lora_ext/ui/result_section.py, training/validation.py)
    "No validation loss in these files (trained before it was measured).": (
        "これらのファイルには検証損失がありません（測る前に学習したものです）。"
    ),
    "Validation loss measured on {source!t}, at fixed noise and timesteps.": (
        "検証損失は{source}で、固定したノイズとタイムステップで測りました。"
    ),
    "Suggested: {label!t} — {reason!t}": "おすすめ: {label} — {reason}",
    "lowest validation loss ({loss})": "検証損失が最小（{loss}）",
    "validation loss {loss}, within {tolerance} of the lowest ({lowest} at epoch {epoch}), and earlier": (
        "検証損失 {loss}。最小値（エポック {epoch} の {lowest}）との差が {tolerance} 以内で、より前のエポック"
    ),
    "Overfit warning: {warning!t}": "過学習の警告: {warning}",
    "the validation loss rose {rise} after epoch {epoch} while the training loss kept falling: later epochs are "
    "likely overfit": "学習損失は下がり続けたのに、検証損失はエポック {epoch} の後で {rise} 上がりました。後のエポックは過学習の可能性が高いです",
    "Stopped early: {reason!t}": "早期終了: {reason}",
    "kept": "残したエポック",  # a run made by Keep this epoch
    "Epoch grid": "エポックのグリッド",
    "final": "最終",  # the result table's "Saved at" of the last file (the others: epoch N, step N)
    # the runs table (lora_ext/ui/result_section.py): a run's status and the parts of its settings
    "running": "実行中",
    "finished": "完了",
    "cancelled": "キャンセル",
    "failed": "失敗",
    "{count} steps": "{count} ステップ",
    "{count} epochs": "{count} エポック",
    "seed {value}": "シード {value}",
    "epoch {number}": "エポック {number}",
    "step {number}": "ステップ {number}",
    "{count} images in {elapsed}": "{count} 枚を {elapsed} で生成",
    "No weights to compare.": "比較するウェイトがありません。",
    "There is no trained LoRA for this version yet.": "このバージョンにはまだ学習済みの LoRA がありません。",
    "train first, or type its name": "先に学習するか、名前を入力してください",
    "type a prompt, e.g. the trigger word and a few tags": "プロンプトを入力してください（例: トリガーワードといくつかのタグ）",
    "Generating: {text!t}": "生成中: {text}",
    "starting…": "開始中…",
    "sampler step {step}/{total}": "サンプラーのステップ {step}/{total}",
    "No <lora:…> token in the prompt.": "プロンプトに <lora:…> トークンがありません。",
    "<lora:…> tokens are not applied: the network loader is not available.": (
        "<lora:…> トークンは適用されません: ネットワークローダーが使えません。"
    ),
    "Lora hashes: {hashes}": "Lora ハッシュ: {hashes}",
    "{what} is using the model": "{what} がモデルを使用中です",
    "generate when it has finished": "終わってから生成してください",
    "Training": "学習",
    "Auto-tagging": "自動タグ付け",
    # jobs and errors met in the flow (lora_ext/app/, lora_ext/dataset/, lora_ext/training/run.py)
    "{name!t} is still running": "{name}が実行中です",
    "{name!t} is still running on {target}": "{target} で{name}が実行中です",
    "wait for it to finish or cancel it first": "終わるのを待つか、先にキャンセルしてください",
    "{name}.safetensors is not in {folder}.": "{name}.safetensors が {folder} にありません。",
    "train first, or check the name": "先に学習するか、名前を確認してください",
    "done": "完了",
    "{value} is not a weight": "{value} はウェイトではありません",
    "unknown training settings: {names}": "不明な学習設定: {names}",
    "That caption table holds different images.": "そのキャプション表は別の画像のものです。",
    "reload the dataset": "データセットを読み込み直してください",
    "Unknown position {value}.": "不明な位置 {value}。",
    "use prepend or append": "prepend か append を使ってください",
    "Unknown replace scope {value}.": "不明な置換範囲 {value}。",
    "use selected, each or caption": "selected、each、caption のいずれかを使ってください",
    "type the trigger word": "トリガーワードを入力してください",
    "Truncating by token count needs a CLIP tokenizer.": "トークン数での切り詰めには CLIP トークナイザが必要です。",
    "load a model in the WebUI first": "先に WebUI でモデルを読み込んでください",
    "tick 'Overwrite changes made outside' and save again": "「外部での変更を上書き」にチェックを入れて、もう一度保存してください",
    "The dataset folder {folder} cannot be created: {reason}.": "データセットフォルダ {folder} を作成できません: {reason}。",
    "The {kind!t} must be text.": "{kind}は文字列でなければなりません。",
    "The {kind!t} {name} is too long ({count} characters).": "{kind} {name} は長すぎます（{count} 文字）。",
    "use at most {count} characters": "{count} 文字以内にしてください",
    "The {kind!t} contains control characters.": "{kind}に制御文字が含まれています。",
    "retype the name without them": "制御文字を除いて名前を入力し直してください",
    "The {kind!t} {name} contains characters Windows does not allow: {chars}": (
        "{kind} {name} に Windows で使えない文字が含まれています: {chars}"
    ),
    "The {kind!t} {name} is a reserved device name on Windows.": "{kind} {name} は Windows の予約デバイス名です。",
    "add a letter to it": "文字を 1 つ加えてください",
    "The {kind!t} {name} ends with a dot, which Windows drops.": "{kind} {name} はドットで終わるため Windows では消えてしまいます。",
    "Copying {name} failed: {reason}.": "{name} の複製に失敗しました: {reason}。",
    "The manifest of {name} is damaged.": "{name} のマニフェストが壊れています。",
    "The manifest field(s) {names} cannot be changed.": "マニフェストの項目 {names} は変更できません。",
    "{name} is not something that can be restored from the trash.": "{name} はゴミ箱から復元できるものではありません。",
    "The projects folder could not be changed: {reason}.": "プロジェクトフォルダを変更できませんでした: {reason}。",
    "check that the folder exists and is writable": "フォルダが存在し書き込めることを確認してください",
    "training is not possible with the model as it is loaded now: {reasons!t}": (
        "今読み込まれている状態のモデルでは学習できません: {reasons}"
    ),
    "the host refused": "ホストが拒否しました",
    "the text encoder cannot be trained here: {reason!t}": "ここではテキストエンコーダを学習できません: {reason}",
    "turn off train_text_encoder (UNet-only training)": "train_text_encoder をオフにしてください（UNet のみの学習）",
    "the LoRA to start from does not exist: {path}": "開始に使う LoRA がありません: {path}",
    "{name} has no layer that matches this model and rank": "{name} にはこのモデルとランクに合う層がありません",
    "start from a LoRA of the same base model and rank": "同じベースモデルとランクの LoRA から始めてください",
    "cannot resume {name}: the saved state has no settings": "{name} を再開できません: 保存された状態に設定がありません",
    "cannot resume {name}: these settings differ from the saved run: {names}": (
        "{name} を再開できません: 次の設定が保存された学習と違います: {names}"
    ),
    "resume with the same settings, or start a new run": "同じ設定で再開するか、新しく学習を始めてください",
    "fp16 mixed precision needs a CUDA device": "fp16 の混合精度には CUDA デバイスが必要です",
    "use bf16 or no on the CPU": "CPU では bf16 か no を使ってください",
    # your presets and settings files (lora_ext/app/presets.py, lora_ext/ui/train_section.py)
    "Saved preset {name}: {path}": "プリセット {name} を保存しました: {path}",
    "Loaded {count} settings from {name}": "{name} から {count} 項目の設定を読み込みました",
    "Not used from the file: {names}": "ファイルのうち使わなかった項目: {names}",
    "{name} is a built-in preset.": "{name} は組み込みのプリセットです。",
    "A preset called {name} exists already.": "{name} というプリセットはすでにあります。",
    "tick 'Replace an existing preset' to save over it": "上書きするには「同名のプリセットを置き換える」にチェックを入れてください",
    "{name} is not a settings file.": "{name} は設定ファイルではありません。",
    "choose a .toml or .json file": ".toml か .json のファイルを選んでください",
    # a large photo on import (lora_ext/dataset/images.py)
    "scaled down from {size} ({count} megapixels) to {scaled}": "{size}（{count} メガピクセル）から {scaled} に縮小しました",
    # export (lora_ext/app/exports.py, lora_ext/ui/export_section.py, lora_ext/dataset/export.py)
    "Exported {images} images and {captions} captions to {path} ({folders})": (
        "画像 {images} 枚とキャプション {captions} 件を {path} にエクスポートしました（{folders}）"
    ),
    "Unknown export format {name}.": "不明なエクスポート形式 {name}。",
    "use zip or folder": "zip か folder を使ってください",
    "There is no exported zip called {name}.": "{name} というエクスポート済みの zip はありません。",
    "export the dataset first": "先にデータセットをエクスポートしてください",
    "The dataset has no images to export.": "データセットにエクスポートする画像がありません。",
    "add images first": "先に画像を追加してください",
    "{path} already exists and is not an empty folder.": "{path} はすでにあり、空のフォルダではありません。",
    "choose a new folder": "新しいフォルダを選んでください",
    "Export to {path} failed: {reason}.": "{path} へのエクスポートに失敗しました: {reason}。",
    # runs, resume and the dataset check before a run (lora_ext/app/runs.py, lora_ext/app/training.py)
    "{old} is kept from an earlier run: this run saves as {name}": "以前の学習の {old} はそのまま残し、今回は {name} として保存します",
    "Resuming {name} with the settings it started with": "{name} を開始時の設定で再開します",
    "Resuming {name} with the settings it started with, not the form's: {changes}": (
        "{name} をフォームの設定ではなく開始時の設定で再開します（フォーム → 保存時: {changes}）"
    ),
    "{project}/{version} has no stopped run to resume.": "{project}/{version} には再開できる中断した学習がありません。",
    "a run can be resumed after Cancel; start a new run instead": (
        "再開できるのはキャンセルした学習です。新しく学習を始めてください"
    ),
    "cannot resume {name}: the saved run is at step {step}, past the {total} steps these settings plan": (
        "{name} を再開できません: 保存された学習はステップ {step} で、この設定の {total} ステップを超えています"
    ),
    "resume with the settings the run started with": "学習を開始したときの設定で再開してください",
    "no training state to resume in {folder}": "{folder} に再開できる学習状態がありません",
    "{path}: not a readable training state ({kind})": "{path}: 読める学習状態ではありません（{kind}）",
    "{path}: the training state has no settings": "{path}: 学習状態に設定がありません",
    "{path}: not a readable run record ({kind})": "{path}: 読める学習記録ではありません（{kind}）",
    "{path}: not a readable run record": "{path}: 読める学習記録ではありません",
    "{name} has been trained {count} times": "{name} はすでに {count} 回学習されています",
    "choose another output name": "別の出力名を選んでください",
    "The dataset has no images to train on.": "データセットに学習できる画像がありません。",
    "add images in the Dataset section (at its top level or in N_name folders)": (
        "データセット欄で画像を追加してください（最上位か N_name フォルダに）"
    ),
    '{count} image(s) have no caption and train with the caption "{caption}": {names}': (
        "キャプションのない画像が {count} 枚あり、キャプション「{caption}」で学習します: {names}"
    ),
    "{count} image(s) have no caption and train with an empty caption: {names}": (
        "キャプションのない画像が {count} 枚あり、空のキャプションで学習します: {names}"
    ),
    # training settings (lora_ext/config.py): shown when the form holds values that cannot work
    "setting {name} must be a {kind}, not {value}": "設定 {name} は {kind} でなければなりません（{value} ではなく）",
    "{name} must be one of {allowed}, not {value}": "{name} は {allowed} のいずれかでなければなりません（{value} ではなく）",
    "{name} must be at least {low}, not {value}": "{name} は {low} 以上でなければなりません（{value} ではなく）",
    "{name} must be above {low}, not {value}": "{name} は {low} より大きくなければなりません（{value} ではなく）",
    "{name} must be at most {high}, not {value}": "{name} は {high} 以下でなければなりません（{value} ではなく）",
    "{name} must be in {interval}, not {value}": "{name} は {interval} の範囲でなければなりません（{value} ではなく）",
    "{name} must be a finite number, not {value}": "{name} は有限の数でなければなりません（{value} ではなく）",
    "conv_rank must be at least 1 for LoCon": "LoCon では conv_rank を 1 以上にしてください",
    "or choose network_type lora": "または network_type に lora を選んでください",
    "timesteps must satisfy 0 ≤ min_timestep < max_timestep ≤ 1000": (
        "タイムステップは 0 ≤ min_timestep < max_timestep ≤ 1000 を満たす必要があります"
    ),
    "set epochs or max_steps to at least 1": "epochs か max_steps を 1 以上にしてください",
    "nothing to train: the UNet learning rate is 0 and the text encoder is not trained": (
        "学習するものがありません: UNet の学習率が 0 で、テキストエンコーダも学習しません"
    ),
    "resolution must be a multiple of 8, not {value}": "resolution は 8 の倍数でなければなりません（{value} ではなく）",
    "min_bucket_reso must not exceed max_bucket_reso": "min_bucket_reso は max_bucket_reso 以下にしてください",
    "the constant schedule has no warm-up": "constant スケジュールにはウォームアップがありません",
    "choose constant_with_warmup": "constant_with_warmup を選んでください",
    "optimizer_args: {item} is not key=value": "optimizer_args: {item} は key=value 形式ではありません",
    "unknown preset {name}": "不明なプリセット {name}",
    "choose one of {names}": "{names} のいずれかを選んでください",
    "cannot read the settings file {path}: {reason}": "設定ファイル {path} を読めません: {reason}",
    "the settings file {path} is not valid {kind}: {reason}": "設定ファイル {path} は正しい {kind} ではありません: {reason}",
    "the settings file {path} must hold a table of settings": "設定ファイル {path} には設定の表が必要です",
    "reading TOML needs Python 3.11 or the 'tomli' package": "TOML の読み込みには Python 3.11 か 'tomli' パッケージが必要です",
    "save the preset as .json instead": "代わりにプリセットを .json で保存してください",
    # the run's working folder (training/paths.py)
    "moved the run's working folder from {old} to {new}": "実行の作業フォルダを {old} から {new} に移しました",
    "The form holds the settings {project} / {version} last trained with.": (
        "フォームには {project} / {version} が最後に学習したときの設定が入っています。"
    ),
    "{project} / {version} has not been trained yet: the form keeps the values it holds (a preset fills in its defaults).": (  # noqa: E501
        "{project} / {version} はまだ学習していません: フォームは今の値のままです（プリセットを選ぶとその既定値が入ります）。"
    ),
    "The saved training settings were not loaded: {error!t}": "保存された学習設定は読み込まれませんでした: {error}",
    "Loss log, previews and resume state: {folder}": "損失ログ・プレビュー・再開用の状態: {folder}",
    # the page's own words (lora_ext/ui/live.py, train_section.py, confidence_bars.py)
    "Show": "表示",
    "loss": "損失",  # the loss chart's series (its legend)
    "smoothed": "平滑化",
    "general": "一般",  # a tag's category on the confidence bars
    "character": "キャラクター",
    "rating": "レーティング",
    "{category!t} threshold {value}": "{category}のしきい値 {value}",
    # dropped files: why one was skipped, and what was changed on the way in (lora_ext/dataset/)
    "refused: {reason!t}": "拒否: {reason}",
    "refused: the path would escape the dataset folder": "拒否: パスがデータセットフォルダの外を指しています",
    "refused: invalid name (contains {chars}, which Windows does not allow)": (
        "拒否: 名前が不正です（Windows で使えない {chars} を含みます）"
    ),
    "refused: links inside zips are not followed": "拒否: zip の中のリンクはたどりません",
    "refused: links are not followed": "拒否: リンクはたどりません",
    "refused: the image is so large it looks like a decompression bomb": "拒否: 画像が大きすぎて解凍爆弾のように見えます",
    "refused: {width}×{height} is {size} megapixels, over the {limit} MP limit (a possible decompression bomb)": (
        "拒否: {width}×{height} は {size} メガピクセルで、上限の {limit} MP を超えています（解凍爆弾の可能性）"
    ),
    "encrypted zip entries cannot be read; unzip it yourself first": "暗号化された zip の項目は読めません。先にご自分で展開してください",
    "not a readable zip ({reason})": "読める zip ではありません（{reason}）",
    "the zip entry cannot be read ({reason})": "zip の項目を読めません（{reason}）",
    "not found": "見つかりません",
    "not an image ({extension!t})": "画像ではありません（{extension}）",
    "no extension": "拡張子なし",
    "HEIC (iPhone photo)": "HEIC（iPhone の写真）",
    "camera RAW": "カメラの RAW",
    "{kind!t} files are not supported; export it as PNG or JPEG first": (
        "{kind} ファイルには対応していません。先に PNG か JPEG で書き出してください"
    ),
    "{kind} images are not supported; export it as PNG or JPEG first": (
        "{kind} 画像には対応していません。先に PNG か JPEG で書き出してください"
    ),
    "not a readable image (damaged, or a format Pillow cannot read)": "読める画像ではありません（壊れているか、読めない形式です）",
    # Pillow's own words (English) are left out of the Japanese line.
    "damaged image ({reason})": "壊れた画像です",
    "damaged or truncated image ({reason})": "壊れているか途中で切れた画像です",
    "the image has no pixels": "画像にピクセルがありません",
    "transparent areas were filled with a plain background": "透明な部分を無地の背景で塗りつぶしました",
    "unused alpha channel removed": "使われていないアルファチャンネルを削除しました",
    "palette image converted to RGB": "パレット画像を RGB に変換しました",
    "16-bit image reduced to 8-bit": "16 ビット画像を 8 ビットにしました",
    "CMYK image converted to RGB": "CMYK 画像を RGB に変換しました",
    "{mode} image converted to RGB": "{mode} 画像を RGB に変換しました",
    "animated or multi-page image: only the first frame was kept": "アニメーションまたは複数ページの画像: 最初のフレームだけを残しました",
    "camera rotation (EXIF orientation) applied": "カメラの回転（EXIF の向き）を反映しました",
    "{kind} converted to PNG": "{kind} を PNG に変換しました",
    "{name} would escape {what!t}.": "{name} は{what}の外を指しています。",
    "{name} is a link (or inside a linked folder) that points outside {what!t}; links are not followed.": (
        "{name} は{what}の外を指すリンク（またはリンクされたフォルダの中）です。リンクはたどりません。"
    ),
    "replace the link with a real file or folder": "リンクを実際のファイルかフォルダに置き換えてください",
    "its folder": "そのフォルダ",
    "the dataset folder": "データセットフォルダ",
    "the tagged folder": "タグ付けしたフォルダ",
    "the LoRA folder": "LoRA フォルダ",
    "{name} is not inside the tagged folder.": "{name} はタグ付けしたフォルダの中にありません。",
    # the dataset and the tag editor (lora_ext/dataset/)
    "There is no caption backup number {number}.": "キャプションのバックアップ #{number} はありません。",
    "The caption backup {name} is damaged.": "キャプションのバックアップ {name} が壊れています。",
    "The regular expression {pattern} is invalid at character {position}: {detail}.": (
        "正規表現 {pattern} の {position} 文字目に誤りがあります。"
    ),
    "The regular expression {pattern} is invalid: {detail}.": "正規表現 {pattern} に誤りがあります。",
    "The replacement {replacement} is invalid: {detail}.": (
        "置換後の文字列 {replacement} が正しくありません（存在しないグループの参照など）。"
    ),
    "Unknown sort order {key}.": "不明な並べ替え順 {key}。",
    "use one of {names}": "{names} のいずれかを使ってください",
    "The token limit must be zero or more.": "トークン数の上限は 0 以上にしてください。",
    "{target} already exists and is not an empty folder.": "{target} は既にあり、空のフォルダではありません。",
    "Export to {target} failed: {reason}.": "{target} への書き出しに失敗しました: {reason}。",
    "The caption {name} is not UTF-8 text.": "キャプション {name} は UTF-8 のテキストではありません。",
    "re-save it as UTF-8": "UTF-8 で保存し直してください",
    "The dataset folder {folder} does not exist.": "データセットフォルダ {folder} がありません。",
    "The caption {name} cannot be read: {reason}.": "キャプション {name} を読めません: {reason}。",
    "{name} was not loaded from this dataset.": "{name} はこのデータセットから読み込まれたものではありません。",
    "Two images that share one caption file were given different captions.": (
        "1 つのキャプションファイルを共有する 2 枚の画像に、違うキャプションが付けられました。"
    ),
    "The save journal {path} is damaged.": "保存ジャーナル {path} が壊れています。",
    "check the captions, then delete the file": "キャプションを確認してから、そのファイルを削除してください",
    "An interrupted caption save could not be completed or undone ({reason}).": (
        "中断されたキャプションの保存を完了することも元に戻すこともできませんでした（{reason}）。"
    ),
    "check the dataset folder's permissions; the journal {path} is kept": (
        "データセットフォルダの権限を確認してください。ジャーナル {path} は残してあります"
    ),
    "Repeats must be a whole number of 1 or more, not {value}.": "繰り返し回数は 1 以上の整数にしてください（{value} ではなく）。",
    "The image {name} is not in this dataset.": "画像 {name} はこのデータセットにありません。",
    "The two caption tables hold different images.": "2 つのキャプション表は別の画像のものです。",
    "Unknown filter logic {value}.": "不明なフィルタ条件 {value}。",
    "use AND, OR or NONE": "AND、OR、NONE のいずれかを使ってください",
    "The image {name} cannot be read: {reason}.": "画像 {name} を読めません: {reason}。",
    "No thumbnail for {name}: {reason}.": "{name} のサムネイルがありません: {reason}。",
    "The dataset {name} is busy: another save, ingestion, tagging or training keeps it locked.": (
        "データセット {name} は使用中です: 別の保存・取り込み・タグ付け・学習がロックしています。"
    ),
    "try again when it finishes (lock file {path})": "終わってからもう一度試してください（ロックファイル {path}）",
    # LoRA files (lora_ext/formats/): a file the Result section or a <lora:…> token reads
    "{name}: tensor {key} contains NaN or infinite values": "{name}: テンソル {key} に NaN または無限大の値があります",
    "the LoRA is broken (often a diverged training run)": "LoRA が壊れています（多くは発散した学習の結果です）",
    "{name}: not readable JSON ({reason})": "{name}: 読める JSON ではありません（{reason}）",
    "the PEFT folder's config is damaged; download it again": "PEFT フォルダの設定が壊れています。ダウンロードし直してください",
    "{name}: cannot read file ({reason})": "{name}: ファイルを読めません（{reason}）",
    "{name}: malformed safetensors header ({reason})": "{name}: safetensors のヘッダが壊れています（{reason}）",
    "{name}: malformed safetensors header (declared {declared} bytes, file has {size})": (
        "{name}: safetensors のヘッダが壊れています（宣言 {declared} バイト、ファイルは {size}）"
    ),
    "the file is truncated or not a safetensors file": "ファイルが途中で切れているか、safetensors ファイルではありません",
    "{name}: malformed safetensors header entry {key}": "{name}: safetensors のヘッダ項目 {key} が壊れています",
    "{name}: file is truncated (tensor {key} ends at byte {end}, file has {size})": (
        "{name}: ファイルが途中で切れています（テンソル {key} は {end} バイト目で終わりますが、ファイルは {size}）"
    ),
    "download the file again": "ファイルをダウンロードし直してください",
    "{name}: file is too short to be a safetensors file ({size} bytes)": (
        "{name}: safetensors ファイルにしては短すぎます（{size} バイト）"
    ),
    "{name}: legacy pickle files (.pt/.ckpt) are never loaded, since a pickle can run code": (
        "{name}: 古い pickle ファイル（.pt/.ckpt）はコードを実行できるため読み込みません"
    ),
    "use the .safetensors version of this LoRA": "この LoRA の .safetensors 版を使ってください",
    "{name}: unknown file type {suffix}": "{name}: 不明なファイル形式 {suffix}",
    "LoRA files are .safetensors": "LoRA ファイルは .safetensors です",
    "{name}: cannot read safetensors data ({reason})": "{name}: safetensors のデータを読めません（{reason}）",
    "file ended while copying tensor data (truncated?)": "テンソルのデータを写している途中でファイルが終わりました（途中で切れている？）",
    # the WebUI (lora_ext/host.py, lora_ext/hosts/)
    "--medvram swaps the text encoder out while the UNet runs, so only the UNet can be trained": (
        "--medvram は UNet の実行中にテキストエンコーダを退避するため、UNet だけを学習できます"
    ),
    "Forge's memory manager cannot hold the training set-up: {reason}": "Forge のメモリ管理では学習の準備を保持できません: {reason}",
    "no checkpoint is loaded in the WebUI": "WebUI にチェックポイントが読み込まれていません",
    "pick one in the checkpoint dropdown": "チェックポイントのドロップダウンから選んでください",
    "{who} cannot train right now: {reasons!t}": "{who} は今は学習できません: {reasons}",
    # the tagger (lora_ext/tagger/)
    "{path} outputs {width} scores but {name} lists {count} tags": "{path} は {width} 個のスコアを出しますが、{name} のタグは {count} 個です",
    "the two files come from different models; download them again": "2 つのファイルは別のモデルのものです。ダウンロードし直してください",
    "{folder} is not a folder": "{folder} はフォルダではありません",
    "batch size must be at least 1, got {value}": "バッチサイズは 1 以上にしてください（{value} ではなく）",
    "cannot read its caption {name} ({reason})": "キャプション {name} を読めません（{reason}）",
    "{source} lists no tags": "{source} にはタグがありません",
    "{source} line {line} has no tag name or no numeric category": "{source} の {line} 行目にタグ名か数値のカテゴリがありません",
    "the file should have the header tag_id,name,category,count": "ファイルには tag_id,name,category,count のヘッダが必要です",
    "cannot read {path}: {reason}": "{path} を読めません: {reason}",
    "{path} is not a WD tag list (columns: {columns})": "{path} は WD のタグ一覧ではありません（列: {columns}）",
    "unknown tagger model {name}": "不明なタガーモデル {name}",
    "use one of {names} or a folder holding {model} and {labels}": (
        "{names} のいずれか、または {model} と {labels} を含むフォルダを使ってください"
    ),
    "{folder} has no {names}": "{folder} に {names} がありません",
    "a tagger folder needs {model} and {labels}": "タガーのフォルダには {model} と {labels} が必要です",
    "tagger model {name} is not downloaded": "タガーモデル {name} はダウンロードされていません",
    "put {model} and {labels} from {url} (revision {revision}) into {folder}": (
        "{url}（リビジョン {revision}）の {model} と {labels} を {folder} に置いてください"
    ),
    "offline? put {model} and {labels} from {url} (revision {revision}) into {folder}": (
        "オフラインですか？ {url}（リビジョン {revision}）の {model} と {labels} を {folder} に置いてください"
    ),
    "cannot download {name} of {repo}: huggingface.co could not be reached (no network or no DNS)": (
        "{repo} の {name} をダウンロードできません: huggingface.co に接続できません（ネットワークか DNS がありません）"
    ),
    "cannot download {name} of {repo}: {reason}": "{repo} の {name} をダウンロードできません: {reason}",
    "caption extension must look like .txt, got {value}": "キャプションの拡張子は .txt のような形にしてください（{value} ではなく）",
    "{name} must be between 0 and 1, got {value}": "{name} は 0 から 1 の間にしてください（{value} ではなく）",
    "max tags must be at least 1, got {value}": "最大タグ数は 1 以上にしてください（{value} ではなく）",
    "rating must be off, first or last, got {value}": "rating は off、first、last のいずれかにしてください（{value} ではなく）",
    "the tagger model was unloaded": "タガーモデルは解放されました",
    "load it again before tagging": "タグ付けの前にもう一度読み込んでください",
    "the tagger model failed on a batch of shape {shape}: {reason}": "タガーモデルが形状 {shape} のバッチで失敗しました: {reason}",
    "onnxruntime is not installed": "onnxruntime がインストールされていません",
    "install exactly one of onnxruntime, onnxruntime-gpu or onnxruntime-directml (>= 1.17)": (
        "onnxruntime、onnxruntime-gpu、onnxruntime-directml（>= 1.17）のどれか 1 つだけをインストールしてください"
    ),
    "WD tagger models need onnxruntime >= {version}; installed: {installed}": (
        "WD タガーモデルには onnxruntime >= {version} が必要です。インストール済み: {installed}"
    ),
    "upgrade the onnxruntime package you have (do not install a second flavour beside it)": (
        "今ある onnxruntime パッケージを更新してください（別の種類を並べてインストールしないでください）"
    ),
    "thread count must be at least 1, got {value}": "スレッド数は 1 以上にしてください（{value} ではなく）",
    "not a WD tagger model: expected one NHWC input [N, S, S, 3], got {shape}": (
        "WD タガーモデルではありません: NHWC の入力 [N, S, S, 3] が 1 つのはずが {shape} です"
    ),
    # resuming and saving a run's state (lora_ext/training/)
    "cannot resume {name}: its state is in {old} and {folder} is already in use": (
        "{name} を再開できません: 状態は {old} にあり、{folder} は既に使われています"
    ),
    "move the resume folder from {old} into {folder}, or start a new run": (
        "再開用フォルダを {old} から {folder} に移すか、新しく学習を始めてください"
    ),
    "{path} was written by another version of the trainer and cannot be resumed": (
        "{path} は別のバージョンの学習器で書かれたため再開できません"
    ),
    "{path}: malformed training state (no state id)": "{path}: 学習状態が壊れています（状態 ID がありません）",
    "{path}: not a readable training state ({reason})": "{path}: 読める学習状態ではありません（{reason}）",
    "{path}: malformed training state ({reason})": "{path}: 学習状態が壊れています（{reason}）",
    "the training state in {folder} is incomplete: {name} is missing": "{folder} の学習状態が不完全です: {name} がありません",
    "the training state in {folder} is incomplete: {name} belongs to another save": (
        "{folder} の学習状態が不完全です: {name} は別の保存のものです"
    ),
    "{name} is a training state from an older version saved as a pickle, which can run code; it is not loaded": (
        "{name} は古いバージョンが pickle で保存した学習状態で、コードを実行できるため読み込みません"
    ),
    "start the run again without resume": "再開せずに学習を始め直してください",
    "the training state does not fit this run ({reason})": "学習状態がこの学習に合いません（{reason}）",
    "the training state cannot be saved: {where} holds a {kind}, which has no safe file form": (
        "学習状態を保存できません: {where} が安全なファイル形式のない {kind} を持っています"
    ),
    "malformed training state: unexpected {kind}": "学習状態が壊れています: 予期しない {kind}",
    "malformed training state: tensor {name} is missing": "学習状態が壊れています: テンソル {name} がありません",
    "malformed training state: {value} is not a float": "学習状態が壊れています: {value} は浮動小数点数ではありません",
    "malformed training state: a key/value list is not made of pairs": (
        "学習状態が壊れています: キーと値のリストが組になっていません"
    ),
    "malformed training state: an unhashable dict key": "学習状態が壊れています: ハッシュできない辞書のキー",
    "malformed training state: unknown marker in {names}": "学習状態が壊れています: {names} に不明なマーカー",
    "no readable training images in {folder}": "{folder} に読める学習用画像がありません",
    "no readable training images in {folder} (skipped: {names})": "{folder} に読める学習用画像がありません（スキップ: {names}）",
    "put images (and .txt captions) in the folder or in N_name sub-folders": (
        "画像（と .txt キャプション）をフォルダか N_name のサブフォルダに入れてください"
    ),
    "the {name} optimizer needs the Python package '{package}', which is not installed": (
        "{name} オプティマイザには Python パッケージ '{package}' が必要ですが、インストールされていません"
    ),
    "pip install {package}, or choose AdamW": "pip install {package} を実行するか、AdamW を選んでください",
    "the loss became {loss} at step {step} (learning rate {lr})": "ステップ {step} で損失が {loss} になりました（学習率 {lr}）",
    "lower the learning rate, use bf16 instead of fp16, or turn on max_grad_norm": (
        "学習率を下げるか、fp16 の代わりに bf16 を使うか、max_grad_norm をオンにしてください"
    ),
}
