"""Japanese labels: visible English text → Japanese (the WebUI localisation convention).

``localizations/ja_JP.json`` is generated from this table (``python -m lora_ext.ui.i18n``);
a test keeps the two equal. Field help texts come from ``TrainConfig``'s metadata.
"""

from __future__ import annotations

JA: dict[str, str] = {
    # page and sections
    "Language": "言語",
    "Refresh model info": "モデル情報を更新",
    "Project": "プロジェクト",
    "Dataset": "データセット",
    "Auto-tag": "自動タグ付け",
    "Tag editor": "タグエディタ",
    "Train": "学習",
    "Result": "結果",
    "Generate": "生成",
    "Basic": "基本",
    "Advanced": "詳細設定",
    # the Advanced settings' groups (lora_ext/ui/train_fields.py ADVANCED_GROUPS)
    "Network": "ネットワーク",
    "Optimizer and schedule": "オプティマイザとスケジュール",
    "Dataset and captions": "データセットとキャプション",
    "Buckets": "バケット",
    "Noise and loss": "ノイズと損失",
    "Memory and precision": "メモリと精度",
    "Saving": "保存",
    "Previews and validation": "プレビューと検証",
    "Metadata": "メタデータ",
    "Other": "その他",
    # the loss chart's axes and legend
    "Step": "ステップ",
    "Series": "系列",
    # project / version
    "Version": "バージョン",
    "Name": "名前",
    "New name for create / rename / duplicate (any language)": "作成・名前変更・複製に使う新しい名前（日本語も可）",
    "Refresh": "更新",
    "Create project": "プロジェクトを作成",
    "Rename project": "プロジェクト名を変更",
    "Duplicate project": "プロジェクトを複製",
    "Delete project": "プロジェクトを削除",
    "New version": "新しいバージョン",
    "Rename version": "バージョン名を変更",
    "Duplicate version": "バージョンを複製",
    "Delete version": "バージョンを削除",
    "Yes, move to trash": "はい、ゴミ箱へ移動",
    "Keep it": "残す",
    # dataset
    "Drop images, folders or zips here": "画像・フォルダ・zip をここにドロップ",
    "Repeat folder": "繰り返しフォルダ",
    "Where files that are not already in an N_name folder go.": "N_name フォルダに入っていないファイルの追加先。",
    "e.g. 10_mychar (empty: top level)": "例: 10_mychar（空欄: 最上位）",
    "Or folders / zips on this machine": "またはこのマシン上のフォルダ / zip",
    "one path per line": "1 行に 1 パス",
    "Add to dataset": "データセットに追加",
    "Images and captions": "画像とキャプション",
    "Selected image": "選択中の画像",
    "Caption": "キャプション",
    "Apply caption": "キャプションを反映",
    "Tagger confidence": "タガーの確信度",
    # tagger
    "Tagger model": "タガーモデル",
    "Local model folders first; the others are downloaded into the tagger folder on first use.": (
        "ローカルのモデルフォルダが先頭。その他は初回使用時にタガーフォルダへダウンロードされます。"
    ),
    "Existing captions": "既存のキャプション",
    "General threshold": "一般タグのしきい値",
    "MCut (general)": "MCut（一般）",
    "Character threshold": "キャラクタータグのしきい値",
    "MCut (character)": "MCut（キャラクター）",
    "Exclude tags": "除外タグ",
    "tag, tag": "タグ, タグ",
    "Trigger / tags written first": "トリガー / 先頭に書くタグ",
    "Max tags (0: no limit)": "最大タグ数（0: 無制限）",
    "Rating tag": "レーティングタグ",
    "Characters first": "キャラクタータグを先に",
    "Batch size": "バッチサイズ",
    "Tagger batch size": "タガーのバッチサイズ",
    "Cancel": "キャンセル",
    "Unload model": "モデルを解放",
    # editor
    "Show images with tags": "このタグを含む画像を表示",
    "Match (show)": "一致条件（表示）",
    "Match (hide)": "一致条件（非表示）",
    "Hide images with tags": "このタグを含む画像を隠す",
    "Apply filter": "フィルタを適用",
    "Tags": "タグ",
    "Add at": "追加位置",
    "Add tags": "タグを追加",
    "Remove tags": "タグを削除",
    "Search": "検索",
    "Replace with": "置換後",
    "Regular expression": "正規表現",
    "In": "対象",
    "Replace": "置換",
    "Sort by": "並べ替え基準",
    "Sort": "並べ替え",
    "Remove duplicates": "重複を削除",
    "Trigger word": "トリガーワード",
    "Trigger word first": "トリガーワードを先頭に",
    "Undo": "元に戻す",
    "Redo": "やり直す",
    "Save captions": "キャプションを保存",
    "Overwrite changes made outside": "外部での変更を上書き",
    # train
    "Preset": "プリセット",
    "auto: beginner defaults for the loaded model's family": "auto: 読み込み中のモデル系統向けの初心者設定",
    "Start training": "学習開始",
    "Resume": "再開",
    "Previews": "プレビュー",
    "Log": "ログ",
    "Regularisation images folder": "正則化画像フォルダ",
    "Prior loss weight": "正則化損失の重み",
    "Repeats": "繰り返し回数",
    "Folder repeats": "フォルダの繰り返し回数",
    "Caption extension": "キャプションの拡張子",
    "Resolution": "解像度",
    "Aspect-ratio buckets": "アスペクト比バケット",
    "Smallest bucket": "最小バケット",
    "Largest bucket": "最大バケット",
    "Bucket step": "バケットの刻み",
    "Don't upscale small images": "小さい画像を拡大しない",
    "Flip augmentation": "左右反転による水増し",
    "Cache latents in RAM": "latent を RAM にキャッシュ",
    "Cache latents on disk": "latent をディスクにキャッシュ",
    "Shuffle caption tags": "キャプションのタグをシャッフル",
    "Keep first tags": "先頭から固定するタグ数",
    "Caption dropout": "キャプションのドロップアウト",
    "Tag dropout": "タグのドロップアウト",
    "Masked loss (alpha)": "マスク付き損失（アルファ）",
    "Validation split": "検証用の割合",
    "Network type": "ネットワークの種類",
    "Rank (dim)": "ランク（dim）",
    "Alpha": "アルファ",
    "Conv rank": "Conv ランク",
    "Conv alpha": "Conv アルファ",
    "Dropout": "ドロップアウト",
    "Rank dropout": "ランクのドロップアウト",
    "Module dropout": "モジュールのドロップアウト",
    "Train the text encoder": "テキストエンコーダも学習",
    "Start from LoRA file": "開始に使う LoRA ファイル",
    "Min-SNR gamma": "Min-SNR ガンマ",
    "Noise offset": "ノイズオフセット",
    "Min timestep": "最小タイムステップ",
    "Max timestep": "最大タイムステップ",
    "Optimizer": "オプティマイザ",
    "Optimizer arguments": "オプティマイザの引数",
    "Weight decay": "重み減衰",
    "UNet learning rate": "UNet の学習率",
    "Text encoder learning rate": "テキストエンコーダの学習率",
    "LR scheduler": "学習率スケジューラ",
    "Warm-up steps": "ウォームアップのステップ数",
    "Warm-up ratio": "ウォームアップの割合",
    "Restart cycles": "リスタート回数",
    "Polynomial power": "多項式の次数",
    "Gradient accumulation": "勾配の累積",
    "Max gradient norm": "勾配ノルムの上限",
    "Mixed precision": "混合精度",
    "Gradient checkpointing": "勾配チェックポイント",
    "Epochs": "エポック数",
    "Max steps (0: use epochs)": "最大ステップ数（0: エポック数を使う）",
    "Seed": "シード",
    "Grid seed": "グリッドのシード",
    "Output name": "出力名",
    "Save precision": "保存精度",
    "Save every N epochs": "N エポックごとに保存",
    "Save every N steps": "N ステップごとに保存",
    "Keep last N files": "最新 N ファイルを保持",
    "Save resumable state": "再開用の状態を保存",
    "Preview prompts": "プレビュー用プロンプト",
    "Preview every N epochs": "N エポックごとにプレビュー",
    "Preview every N steps": "N ステップごとにプレビュー",
    "Validate every N steps": "N ステップごとに検証",
    "Early stop patience": "早期終了までの検証回数",
    "Training comment": "学習コメント",
    "Preferred weight": "推奨ウェイト",
    "VAE in fp32": "VAE を fp32 で",
    # field help (TrainConfig metadata)
    "Optional folder of regularisation images (same layout).": "正則化画像の任意のフォルダ（同じ構成）。",
    "Loss weight of regularisation images.": "正則化画像の損失の重み。",
    "Repeats for images at the top level of the dataset folder.": "データセットフォルダ最上位の画像の繰り返し回数。",
    "Extension of caption files next to the images.": "画像の隣にあるキャプションファイルの拡張子。",
    "Training resolution (side of the square with the target area).": "学習解像度（目標面積の正方形の一辺）。",
    "Aspect-ratio bucketing: group images by shape instead of cropping to a square.": (
        "アスペクト比バケット: 正方形に切り抜かず、形ごとに画像をまとめます。"
    ),
    "Smallest bucket side.": "バケットの最小辺。",
    "Largest bucket side.": "バケットの最大辺。",
    "Bucket sides are multiples of this.": "バケットの辺はこの値の倍数になります。",
    "Never upscale small images; their bucket is their own size.": (
        "小さい画像は拡大せず、そのままの大きさのバケットに入れます。"
    ),
    "Randomly mirror images (leave off for faces and asymmetric characters).": (
        "画像をランダムに左右反転します（顔や左右非対称なキャラクターではオフに）。"
    ),
    "Encode each image once and keep the latent in RAM.": "各画像を一度だけエンコードし、latent を RAM に保持します。",
    "Also keep latents in .npz-like files next to the images.": "latent を画像の隣のファイルにも保存します。",
    "Shuffle the tags of each caption every time it is used.": "使うたびにキャプションのタグ順をシャッフルします。",
    "Number of leading tags that shuffle and tag dropout never touch.": (
        "シャッフルやタグのドロップアウトの対象外にする先頭のタグ数。"
    ),
    "Probability of training a sample with an empty caption.": "空のキャプションで学習する確率。",
    "Probability of dropping each (non-kept) tag.": "各タグ（固定分を除く）を落とす確率。",
    "Put first in every caption (if missing) and written as activation text.": (
        "すべてのキャプションの先頭に入れ（無ければ追加）、起動テキストとして記録します。"
    ),
    "Use the image's alpha channel as a loss mask.": "画像のアルファチャンネルを損失のマスクに使います。",
    "Fraction of images held out for the validation loss (fixed noise and timesteps); 0 measures it on a fixed "
    "sample of the training images.": (
        "検証損失のために学習から外す画像の割合（ノイズとタイムステップは固定）。0 では学習画像の決まった一部で測ります。"
    ),
    "lora (linear and 1×1 layers), locon (adds 3×3 convolutions), loha or lokr (LyCORIS; 3×3 convolutions "
    "too unless conv_rank is 0).": (
        "lora（線形層と 1×1 層）、locon（3×3 畳み込みも追加）、loha または lokr（LyCORIS。conv_rank が 0 でなければ "
        "3×3 畳み込みも）。"
    ),
    "LoRA rank (network_dim).": "LoRA のランク（network_dim）。",
    "LoRA alpha; the update is scaled by alpha / rank.": "LoRA のアルファ。更新量は alpha / rank 倍されます。",
    "Rank of 3×3 convolution LoRAs (LoCon, LoHa, LoKr).": "3×3 畳み込み LoRA のランク（LoCon、LoHa、LoKr）。",
    "Alpha of 3×3 convolution LoRAs (LoCon, LoHa, LoKr).": "3×3 畳み込み LoRA のアルファ（LoCon、LoHa、LoKr）。",
    "Neuron dropout on the LoRA down-projection output.": "LoRA の down 出力へのニューロンドロップアウト。",
    "Probability of dropping each rank channel per sample.": "サンプルごとに各ランクのチャンネルを落とす確率。",
    "Probability of skipping a whole LoRA module for a step.": "1 ステップの間 LoRA モジュール全体を飛ばす確率。",
    "Also train LoRAs on the text encoder(s).": "テキストエンコーダにも LoRA を学習させます。",
    "Optional LoRA file to start from (same rank).": "学習の開始点にする任意の LoRA ファイル（同じランク）。",
    "Min-SNR-γ loss weighting; 0 turns it off (5 is common).": "Min-SNR-γ による損失の重み付け。0 でオフ（5 が一般的）。",
    "Noise offset strength (about 0.05–0.1 helps very dark/bright images).": (
        "ノイズオフセットの強さ（0.05〜0.1 程度で非常に暗い / 明るい画像に効きます）。"
    ),
    "Lowest training timestep.": "学習に使う最小のタイムステップ。",
    "One above the highest training timestep.": "学習に使う最大のタイムステップ + 1。",
    "AdamW, AdamW8bit (bitsandbytes, CUDA), Lion (lion-pytorch), Prodigy (prodigyopt), Adafactor, "
    "AdamWScheduleFree (schedulefree; no LR schedule), SGD.": (
        "AdamW、AdamW8bit（bitsandbytes、CUDA）、Lion（lion-pytorch）、Prodigy（prodigyopt）、Adafactor、"
        "AdamWScheduleFree（schedulefree。学習率スケジュールなし）、SGD。"
    ),
    "Extra optimizer arguments as 'key=value key=value'.": "オプティマイザへの追加引数（'key=value key=value' 形式）。",
    "Weight decay.": "重み減衰。",
    "Learning rate of the UNet LoRAs.": "UNet の LoRA の学習率。",
    "Learning rate of the text-encoder LoRAs.": "テキストエンコーダの LoRA の学習率。",
    "constant, constant_with_warmup, cosine, cosine_with_restarts, linear, polynomial.": (
        "constant、constant_with_warmup、cosine、cosine_with_restarts、linear、polynomial。"
    ),
    "Warm-up steps; when 0, warmup_ratio is used.": "ウォームアップのステップ数。0 のときは warmup_ratio を使います。",
    "Warm-up as a fraction of all steps (used when warmup_steps is 0).": (
        "全ステップに対するウォームアップの割合（warmup_steps が 0 のとき使用）。"
    ),
    "Restarts of cosine_with_restarts.": "cosine_with_restarts のリスタート回数。",
    "Power of the polynomial schedule.": "polynomial スケジュールの次数。",
    "Images per batch (a batch never mixes buckets).": "1 バッチの画像数（バッチ内でバケットは混ざりません）。",
    "Batches per optimizer step.": "オプティマイザの 1 ステップあたりのバッチ数。",
    "Clip the gradient norm to this; 0 turns clipping off.": "勾配ノルムをこの値で切り詰めます。0 でオフ。",
    "no, fp16 (with a gradient scaler) or bf16 autocast.": "no、fp16（勾配スケーラー付き）、bf16 の autocast。",
    "Recompute activations in backward (less memory, ~20–30 % slower).": (
        "逆伝播で活性を再計算します（メモリ削減、約 20〜30 % 低速）。"
    ),
    "Number of epochs (ignored when max_steps is set).": "エポック数（max_steps を設定すると無視）。",
    "Total optimizer steps; 0 means epochs × steps per epoch.": (
        "オプティマイザの総ステップ数。0 はエポック数 × 1 エポックのステップ数。"
    ),
    "Random seed; the same seed on CPU gives the same file.": "乱数シード。CPU では同じシードで同じファイルになります。",
    "File stem of the LoRA; also ss_output_name (the prompt alias).": (
        "LoRA のファイル名（拡張子なし）。ss_output_name（プロンプトでの別名）にもなります。"
    ),
    "Tensor dtype of the saved file: fp16, bf16 or fp32.": "保存ファイルのテンソル型: fp16、bf16、fp32。",
    "Also save <name>-000005.safetensors every N epochs; 0 = only at the end.": (
        "N エポックごとに <name>-000005.safetensors も保存。0 = 最後だけ。"
    ),
    "Also save <name>-step00000100.safetensors every N steps.": "N ステップごとに <name>-step00000100.safetensors も保存。",
    "Keep only the last N intermediate files; 0 keeps all.": "途中保存ファイルを最新 N 個だけ残します。0 ですべて保持。",
    "Save a resumable training state with each save.": "保存のたびに再開用の学習状態も保存します。",
    "Preview prompts, one per line, with --n --w --h --s --l --d options.": (
        "プレビュー用プロンプト（1 行に 1 つ、--n --w --h --s --l --d オプション付き）。"
    ),
    "Generate previews every N epochs; 0 = never.": "N エポックごとにプレビューを生成。0 = 生成しない。",
    "Generate previews every N steps; 0 = never.": "N ステップごとにプレビューを生成。0 = 生成しない。",
    "Validation loss every N steps; 0 = at the end of each epoch.": "N ステップごとに検証損失。0 = 各エポックの終わり。",
    "Stop when the validation loss has not improved for N validations and keep the best epoch; 0 = off.": (
        "検証損失が N 回続けて改善しなければ学習を止め、最良のエポックを残します。0 = オフ。"
    ),
    "Free text stored as ss_training_comment.": "ss_training_comment として保存される自由記述。",
    "Weight written to the <name>.json sidecar.": "<name>.json に書き込まれる推奨ウェイト。",
    "Keep latent encoding in fp32 (recommended for SDXL with fp16).": (
        "latent のエンコードを fp32 で行います（SDXL を fp16 で使う場合に推奨）。"
    ),
    # v-prediction, zero terminal SNR, LyCORIS and LoRA+ (issue 26)
    "Prediction": "予測の種類",
    "Zero terminal SNR": "ゼロ終端 SNR",
    "Train against the model's detection": "モデルの検出結果に逆らって学習",
    "Debiased estimation": "偏り補正の重み（Debiased estimation）",
    "DoRA (weight decomposition)": "DoRA（重み分解）",
    "LoKr factor": "LoKr の分割係数",
    "LoRA+ ratio": "LoRA+ の倍率",
    "What the UNet is trained to predict: auto (the model's own), eps or v.": (
        "UNet に学習させる予測の種類: auto（モデル自身のもの）、eps、v。"
    ),
    "Zero-terminal-SNR noise schedule (v-prediction models such as NoobAI V-Pred): auto, on or off.": (
        "ゼロ終端 SNR のノイズスケジュール（NoobAI V-Pred などの v 予測モデル）: auto、on、off。"
    ),
    "Allow a prediction or schedule other than the loaded model's (the LoRA will not match the model).": (
        "読み込んだモデルと異なる予測やスケジュールを許可します（LoRA はモデルに合わなくなります）。"
    ),
    "Debiased-estimation loss weighting (1/√SNR for ε, 1/(SNR+1) for v).": (
        "Debiased estimation による損失の重み付け（ε は 1/√SNR、v は 1/(SNR+1)）。"
    ),
    "DoRA: also train a magnitude per input column (weight decomposition, LyCORIS dora_wd).": (
        "DoRA: 入力列ごとの大きさも学習します（重み分解、LyCORIS の dora_wd）。"
    ),
    "LoKr: split each dimension at most this far (-1: as square as possible).": (
        "LoKr: 各次元をこの値までで分割します（-1: できるだけ正方形に）。"
    ),
    "LoRA+: train the up (B) matrices this many times faster; 0 = off (16 is common).": (
        "LoRA+: up（B）行列をこの倍率の学習率で学習します。0 = オフ（16 が一般的）。"
    ),
    "Memory mode": "メモリの設定",
    "manual, or auto: before the run, turn on checkpointing, fp8 base weights and UNet-only training as "
    "needed to fit the device's free memory.": (
        "manual、または auto: 学習の前に、デバイスの空きメモリに収まるよう必要に応じて勾配チェックポイント、"
        "fp8 の重み、UNet のみの学習をオンにします。"
    ),
    "Fused backward pass": "融合した逆伝播（fused backward）",
    "UNet weights in fp8": "UNet の重みを fp8 で保持",
    "Adafactor only: step and free each gradient during backward (sd-scripts' fused backward pass).": (
        "Adafactor のみ: 逆伝播の途中で勾配ごとに更新して解放します（sd-scripts の fused backward pass）。"
    ),
    "Keep the frozen UNet weights in fp8 while training (each layer upcast when it runs; less memory).": (
        "学習中、固定された UNet の重みを fp8 で保持します（各層は実行時に精度を上げます。メモリ削減）。"
    ),
    # result and generate
    "LoRA name": "LoRA 名",
    "Prompt token": "プロンプト用トークン",
    "Copy": "コピー",
    "Grid prompts (one per line)": "グリッドのプロンプト（1 行に 1 つ）",
    "Negative prompt": "ネガティブプロンプト",
    "Steps": "ステップ数",
    "Size": "サイズ",
    "File": "ファイル",
    "Saved at": "保存時点",
    "Runs (click one to show its files)": "学習の記録（クリックでそのファイルを表示）",
    "Save these settings as a preset": "この設定をプリセットとして保存",
    "preset name": "プリセット名",
    "Save preset": "プリセットを保存",
    "Replace an existing preset": "同名のプリセットを置き換える",
    "Load settings file (.toml / .json, kohya too)": "設定ファイルを読み込む（.toml / .json、kohya のものも）",
    "Preset file": "プリセットファイル",
    "Export": "エクスポート",
    "Export as": "エクスポート形式",
    "zip (download)": "zip（ダウンロード）",
    "kohya folder (N_name)": "kohya フォルダ（N_name）",
    "N of the top-level images' N_name folder; 0: as the training settings": (
        "最上位の画像を入れる N_name フォルダの N。0 なら学習設定のとおり"
    ),
    "Folder name": "フォルダ名",
    "empty: the trigger word, else the project's name": "空欄: トリガーワード、なければプロジェクト名",
    "Export dataset": "データセットをエクスポート",
    "Exported zip": "エクスポートした zip",
    "Run": "学習",
    "Started": "開始",
    "Status": "状態",
    "Settings": "設定",
    "Files": "ファイル数",
    "Weights": "ウェイト",
    "Epochs × weights": "エポック × ウェイト",
    "Validation and training loss": "検証損失と学習損失",
    "File to keep": "残すファイル",
    "Keep this epoch": "このエポックを残す",
    "Render grid": "グリッドを生成",
    "Grid": "グリッド",
    "Cells": "セル",
    "Prompt": "プロンプト",
    "Width": "幅",
    "Height": "高さ",
    "CFG scale": "CFG スケール",
    "Loss": "損失",
    # radio options: shown translated, their values stay English (configs, the CLI and the REST API use them)
    "skip": "スキップ",
    "overwrite": "上書き",
    "append": "末尾に追加",
    "prepend": "先頭に追加",
    "off": "オフ",
    "first": "先頭",
    "last": "末尾",
    "AND": "すべて含む (AND)",
    "OR": "いずれかを含む (OR)",
    "NONE": "どれも含まない (NONE)",
    "selected": "選択中のタグ",
    "each": "すべてのタグ",
    "caption": "キャプション全体",
    "alphabetical": "アルファベット順",
    "frequency": "出現回数順",
    "length": "長さ順",
    "Training here is one process on the loaded model. For several GPUs or machines, run the version's "
    "config/train.toml with `torchrun … -m lora_ext train --config` (see the README).": (
        "ここでの学習は読み込んだモデルで 1 プロセスです。複数の GPU やマシンでは、バージョンの config/train.toml を"
        "`torchrun … -m lora_ext train --config` で実行してください（README を参照）。"
    ),
}

# Texts gradio's frontend draws itself (in the browser's language, not the page's): the WebUI's
# localization and the standalone app's script (javascript/train_tools.js) relabel them by exact text.
GRADIO_JA: dict[str, str] = {
    "Drop File Here": "ここにファイルをドロップ",
    "or": "または",
    "Click to Upload": "クリックしてアップロード",
    "Generate": "生成",
    "Warning": "警告",  # a toast's title
    "Error": "エラー",
}
