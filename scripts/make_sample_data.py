#!/usr/bin/env python3
"""Regenerate the bundled Italian speech sample (synthetic speech).

Usage:
    .venv/bin/python scripts/make_sample_data.py [--out DIR] [--seed N] [--no-espeak]

Requirements (Debian):
    apt-get install -y festival festvox-italp16k festvox-itapc16k espeak-ng fortunes-it
Python: numpy, soundfile (libsndfile with OGG Vorbis), soxr.

What it does
------------
* Reads Italian sentences from Debian's ``fortunes-it`` files, restores the
  accents written as apostrophes (``e'`` -> ``è``, ``perche'`` -> ``perché``,
  ``citta'`` -> ``città``; elisions such as ``l'uomo`` / ``dell'anno`` and the
  truncation ``po'`` are kept) and keeps only short, clean sentences (3-9
  words, letters and basic punctuation only, every word known to the Italian
  festival lexicon, no capitalised words except the first, no digits, no
  quotes, a small blocklist of crude/sensitive words), deduplicated.
* Picks N_SEEN + N_UNSEEN sentences with a seeded RNG.
* Synthesises them with festival (Italian diphone voices ``lp`` female and
  ``pc`` male) and, unless ``--no-espeak``, espeak-ng (``it`` voice), with a
  seeded random speaking rate and pitch per rendition.
* Resamples to 16 kHz mono (soxr), trims leading/trailing silence, normalises
  the peak, writes OGG Vorbis.

Split design (see asr_finetuner/sample_data/README.md)
------------------------------------------------------
* "seen" sentences (S001..): 3 renditions each.  Two go to train/, by two
  different voices; the voice pair rotates over the sentences (lp+pc, pc+espeak,
  espeak+lp, ...) so every voice has the same share.  The third goes to
  validation/: one of the two train voices (alternating which one) at a new
  seeded speed and pitch, redrawn until both differ by at least MIN_VAL_DELTA
  from that voice's train rendition.  Validation therefore holds the training
  sentences, by voices heard saying them, at new speaking rates and pitches.
* "unseen" sentences (U001..): 2 renditions each, all in test/.  No test
  sentence occurs in train/validation: test measures generalisation to new text.

The output is deterministic for a given seed (and given package versions).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "asr_finetuner" / "sample_data" / "it"

SEED = 20240601
N_SEEN = 120
N_UNSEEN = 30
SEEN_RENDITIONS = 3  # 2 -> train (two voices), 1 -> validation (one of them)
MIN_VAL_DELTA = 0.08  # validation speed and pitch differ at least this much
                      # from the same voice's train rendition of the sentence
UNSEEN_RENDITIONS = 2  # both -> test

SR = 16000
MIN_SECONDS = 1.0  # shorter clips are padded with silence
MAX_SECONDS = 6.8  # hard limit 7 s; longer renditions are re-rendered faster
VORBIS_COMPRESSION = 0.7  # libsndfile: vorbis quality = 1 - compression_level
PEAK = 0.89  # about -1 dBFS
DECODED_PEAK_MAX = 0.99  # after Vorbis encoding (see write_ogg)
SIZE_LIMIT_MB = 10.0

FORTUNE_DIR = Path("/usr/share/games/fortunes/it")
# 'computer' and 'itatrek' are full of English jargon and names, 'luttazzi'
# is satire of dubious taste, 'jackfr' is a stream-of-consciousness novel
# excerpt, 'banner' is ASCII art.
FORTUNE_FILES = [
    "adams", "definizioni", "formiche", "italia", "leggi", "luke", "norm",
    "paolotedeschi", "zuse",
]
LEXICON = Path("/usr/share/festival/dicts/ifd/lex.out")

# Crude, sexual, religious, violent or otherwise touchy words (prefix match on
# lowercase words).  The selected sentences were also reviewed by hand.
BLOCKLIST_PREFIXES = (
    "cazz", "culo", "culi", "merd", "puttan", "troi", "stronz", "fott", "scop",
    "negr", "frocio", "froci", "finocch", "ebre", "handicap", "sess", "pene",
    "vagin", "tett", "pompin", "masturb", "porn", "mignott", "bastard",
    "coglion", "incul", "vaffan", "zoccol", "pisci", "cacca", "dio",
    "madonn", "crist", "gesù", "porco", "porca", "suicid", "uccid", "ammazz",
    "stupr", "bomb", "drog", "mort", "morir", "muor", "cadaver", "bara",
    "prete", "preti", "papa", "chiesa", "nud", "amante", "vergin",
    "seno", "sedere", "orgasm", "eroin", "guerra", "armi", "sangue",
    "grass", "brutt", "scem", "idiot", "cretin", "imbecill", "deficient",
    "ladr", "galer", "prostitu", "politic", "partit", "fascis", "comunis",
    "nazis", "razz", "mafi", "odio", "odi", "spar", "pistol", "fucil",
    "computer", "sport", "gay", "lesbic", "sesso", "mutand", "reggisen",
    "vomit", "pipì", "cesso", "mogli", "marit", "divorz", "donn", "femmin",
    "violen", "carnal", "acid", "schiav", "eutanas", "orfan", "orizzontal",
    "concavit", "viscid", "puzz", "tortur", "malat", "cancr", "ospedal",
    # nationalities and regions (stereotype jokes)
    "american", "tedesc", "sicilian", "colombian", "napoletan", "milanes",
    "roman", "italian", "frances", "ingles", "cines", "giappones", "arab",
    "russi", "russo", "meridional", "terron", "zingar", "marocchin",
    "albanes", "sard", "genoves", "toscan", "venet", "scozzes", "irlandes",
    "svizzer", "spagnol", "african", "indian", "ebraic", "islam", "musulman",
    "cattolic", "protestant", "negr", "polacc", "turc", "austriac", "slovacc",
    "socialis", "democrist", "leghist", "vedov", "coler", "letal", "schizofren",
    "amor", "ecc",
)
# Exact words (lowercase) to reject even though they pass the prefix test.
BLOCKLIST_WORDS = {"dio", "diavolo", "inferno", "letto", "ok"}

# Sentences rejected on manual review (innuendo, death, weapons, ...).
EXCLUDE_SENTENCES = {
    "Io lo faccio due volte al giorno.",
    "Non importa, lo so che creperò presto.",
    "Noi portatori di adipe siamo discriminati.",
    "Per punizione passerete l'eternità sposati a un canotto.",
    "Il gas nervino non è un gioco.",
    "Mi piacciono i giovani.",
    "L'ovulazione è tipica delle galline?",
    "Il capitalismo è una ingiusta ripartizione della ricchezza.",
    "Sacco vuoto non istà ritto.",
    "Fra un po' esci con uno spermatozoo!",
    "Questo fortune è falso.",
}

# Word-final apostrophe forms that are truncations/imperatives, not accents.
KEEP_APOSTROPHE = {"po", "mo", "be", "di", "fa", "sta", "va", "to"}
# Words ending in e' that take the closed accent é.
ACUTE_E_WORDS = {"ne", "se", "fe", "merce", "mercede", "scimpanze", "viceré"}

ALLOWED_CHARS = re.compile(r"^[A-Za-zÀÈÉÌÒÙàèéìíòóùú ,.!?']+$")
VOWELS = "aeiouAEIOU"
ACCENT_GRAVE = {"a": "à", "e": "è", "i": "ì", "o": "ò", "u": "ù",
                "A": "À", "E": "È", "I": "Ì", "O": "Ò", "U": "Ù"}
ACCENT_ACUTE_E = {"e": "é", "E": "É"}


# ----------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------

def load_lexicon() -> set[str]:
    words = set()
    with open(LEXICON, encoding="latin-1") as fh:
        for line in fh:
            m = re.match(r'\("([^"]+)"', line)
            if m:
                words.add(m.group(1))
    return words


def read_fortunes() -> list[str]:
    """Return fortunes (attribution lines dropped, whitespace collapsed)."""
    out = []
    for name in FORTUNE_FILES:
        raw = (FORTUNE_DIR / name).read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        text = unicodedata.normalize("NFC", text)
        for block in re.split(r"^%\s*$", text, flags=re.M):
            lines = [ln for ln in block.splitlines()
                     if not re.match(r"^\s*(--|\(|-\s)", ln)]
            joined = " ".join(ln.strip() for ln in lines if ln.strip())
            if joined:
                out.append(joined)
    return out


def restore_word_final(word: str) -> str | None:
    """`word` is the part before a word-final apostrophe.  Return the word with
    the accent restored, the word with its apostrophe kept, or None if it is
    not something we understand."""
    if not word or word[-1] not in VOWELS:
        return None  # consonant + ' + space: quote mark or weird truncation
    low = word.lower()
    if low in KEEP_APOSTROPHE:
        return word + "'"
    if low == "da":
        return word[:-1] + "à"  # dà (gives)
    last = word[-1]
    if last in "eE" and (low.endswith("che") or low in ACUTE_E_WORDS
                         or low.endswith("tre") and len(low) > 3):
        return word[:-1] + ACCENT_ACUTE_E[last]
    return word[:-1] + ACCENT_GRAVE[last]


def restore_accents(sentence: str) -> str | None:
    """Convert the fortunes' apostrophe accents; None if the sentence has
    apostrophes we cannot interpret safely."""
    out = []
    i = 0
    n = len(sentence)
    while i < n:
        ch = sentence[i]
        if ch != "'":
            out.append(ch)
            i += 1
            continue
        prev = sentence[i - 1] if i > 0 else " "
        nxt = sentence[i + 1] if i + 1 < n else " "
        if not prev.isalpha():
            return None  # opening quote
        if nxt.isalpha():
            # elision (l'uomo, dell'anno, c'era): the elided word must end in
            # a consonant; vowel + ' + letter is a typo like "e'stato".
            if prev in VOWELS:
                return None
            out.append("'")
            i += 1
            continue
        # word-final apostrophe: find the word
        j = len(out)
        while j > 0 and out[j - 1].isalpha():
            j -= 1
        word = "".join(out[j:])
        fixed = restore_word_final(word)
        if fixed is None:
            return None
        del out[j:]
        out.append(fixed)
        i += 1
    return "".join(out)


def split_sentences(fortune: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", fortune) if s.strip()]


def words_of(sentence: str) -> list[str]:
    return re.findall(r"[^\W\d_]+(?:'[^\W\d_]*)?", sentence)


def collect_lowercase_vocab(fortunes: list[str]) -> set[str]:
    """Words that occur in lowercase somewhere (used to tell a capitalised
    first word from a proper name)."""
    vocab = set()
    for f in fortunes:
        for w in re.findall(r"\b[a-zàèéìòù]+\b", f):
            vocab.add(w)
    return vocab


def is_known(word: str, lexicon: set[str]) -> bool:
    """Every part of an (elided) word must be a known Italian word."""
    parts = word.lower().split("'")
    if len(parts) > 2:
        return False
    if len(parts) == 2:
        pre, post = parts
        if post == "":  # kept apostrophe: po', di', fa'...
            return pre in KEEP_APOSTROPHE
        if not any(pre + v in lexicon for v in "aeio"):
            return False
        word = post
    else:
        word = parts[0]
    if word in lexicon:
        return True
    # accented final vowel: festival's rules handle it; the lexicon lacks
    # some forms (può, perciò); require the unaccented stem to be plausible.
    if word[-1] in "àèéìòù" and re.fullmatch(r"[a-z]+[àèéìòù]", word):
        return True
    return False


def clean_sentence(raw: str, lexicon: set[str], vocab: set[str]) -> str | None:
    s = re.sub(r"\s+", " ", raw).strip()
    if "`" in s or '"' in s or any(c.isdigit() for c in s):
        return None
    s = restore_accents(s)
    if s is None:
        return None
    if not ALLOWED_CHARS.match(s):
        return None
    if not s[0].isupper() or s[-1] not in ".!?":
        return None
    if re.search(r"[.!?].", s[:-1]) or ".." in s or " ," in s or ",," in s:
        return None  # ellipsis, abbreviation or more than one sentence
    if re.search(r"[!?]{2,}|[,!?][A-Za-z]", s):
        return None
    words = words_of(s)
    if not 3 <= len(words) <= 9:
        return None
    if len(s) > 70:
        return None
    first = words[0]
    if first.lower().split("'")[0] not in vocab and first.lower() not in vocab:
        return None  # capitalised first word never seen in lowercase: a name
    for k, w in enumerate(words):
        if k > 0 and any(c.isupper() for c in w):
            return None  # proper names, acronyms
        low = w.lower()
        if re.search(r"[jkwxy]", low):
            return None  # foreign words
        for part in low.split("'"):
            if not part:
                continue
            if part in BLOCKLIST_WORDS or part.startswith(BLOCKLIST_PREFIXES):
                return None
        if not is_known(w, lexicon):
            return None
    return s


def norm_key(s: str) -> str:
    return re.sub(r"[^a-zàèéìíòóùú]", "", s.lower())


def select_sentences(seed: int) -> tuple[list[str], list[str], int]:
    lexicon = load_lexicon()
    fortunes = read_fortunes()
    vocab = collect_lowercase_vocab(fortunes)
    cands = {}
    for f in fortunes:
        for raw in split_sentences(f):
            s = clean_sentence(raw, lexicon, vocab)
            if s is not None and s not in EXCLUDE_SENTENCES:
                cands.setdefault(norm_key(s), s)
    # Seeded order that is stable when a candidate is added or removed (e.g.
    # by editing the blocklist): sort by a keyed hash of the sentence.
    pool = sorted(cands.values(),
                  key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    need = N_SEEN + N_UNSEEN
    if len(pool) < need:
        sys.exit(f"only {len(pool)} candidate sentences, need {need}")
    chosen = pool[:need]
    return chosen[:N_SEEN], chosen[N_SEEN:], len(pool)


# ----------------------------------------------------------------------------
# Voices
# ----------------------------------------------------------------------------

# name -> (engine, festival voice function / espeak voice, pitch range)
VOICES = {
    "festival_lp": ("festival", "voice_lp_diphone", (0.88, 1.18)),  # female
    "festival_pc": ("festival", "voice_pc_diphone", (0.92, 1.20)),  # male
    "espeak-ng_it": ("espeak", "it", (0.75, 1.30)),  # male formant voice
}
SPEED_RANGE = (0.85, 1.15)  # relative speaking rate, 1.0 = voice default
ESPEAK_BASE_WPM = 160
ESPEAK_BASE_PITCH = 50

FESTIVAL_PRELUDE = """
(defvar pitch_factor 1.0)
(set! orig_Int_Targets Int_Targets)
(define (Int_Targets utt)
  (orig_Int_Targets utt)
  (mapcar (lambda (tg) (item.set_feat tg "f0" (* pitch_factor (item.feat tg "f0"))))
          (utt.relation.items utt 'Target))
  utt)
(define (render text file)
  (let ((u (utt.synth (eval (list 'Utterance 'Text text)))))
    (utt.save.wave u file 'riff)))
"""


def synth_festival(jobs: list[dict], tmp: Path) -> None:
    """jobs: dicts with voice, text, speed, pitch, wav.  Batch per voice."""
    by_voice: dict[str, list[dict]] = {}
    for j in jobs:
        by_voice.setdefault(j["voice"], []).append(j)
    for voice, vjobs in sorted(by_voice.items()):
        lines = [FESTIVAL_PRELUDE, f"({VOICES[voice][1]})"]
        for j in vjobs:
            text = j["text"]
            assert '"' not in text and "\\" not in text
            lines.append(f"(set! pitch_factor {j['pitch']:.4f})")
            lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / j['speed']:.4f})")
            lines.append(f'(render "{text}" "{j["wav"]}")')
        script = tmp / f"{voice}.scm"
        # the Italian voices expect ISO-8859-1 text
        script.write_bytes("\n".join(lines).encode("latin-1"))
        res = subprocess.run(["festival", "-b", str(script)],
                             capture_output=True, text=True,
                             encoding="latin-1")
        missing = [j for j in vjobs if not Path(j["wav"]).exists()]
        if res.returncode != 0 or missing:
            sys.exit(f"festival failed for {voice}:\n{res.stdout}\n{res.stderr}")


def synth_espeak(jobs: list[dict]) -> None:
    for j in jobs:
        wpm = round(ESPEAK_BASE_WPM * j["speed"])
        pitch = max(0, min(99, round(ESPEAK_BASE_PITCH * j["pitch"])))
        subprocess.run(["espeak-ng", "-v", VOICES[j["voice"]][1], "-s", str(wpm),
                        "-p", str(pitch), "-w", j["wav"], "--", j["text"]],
                       check=True, capture_output=True)


def synthesize(jobs: list[dict], tmp: Path) -> None:
    fest = [j for j in jobs if VOICES[j["voice"]][0] == "festival"]
    esp = [j for j in jobs if VOICES[j["voice"]][0] == "espeak"]
    if fest:
        synth_festival(fest, tmp)
    if esp:
        synth_espeak(esp)


# ----------------------------------------------------------------------------
# Audio
# ----------------------------------------------------------------------------

def postprocess(wav_path: str) -> np.ndarray:
    audio, sr = sf.read(wav_path, dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != SR:
        audio = soxr.resample(audio, sr, SR, quality="HQ")
    # light silence trim: 10 ms frames, threshold 40 dB below the loudest
    # frame, keep 100 ms of margin on each side
    frame = SR // 100
    n = len(audio) // frame
    if n > 0:
        rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
        thr = rms.max() * 10 ** (-40 / 20)
        idx = np.nonzero(rms > thr)[0]
        if len(idx):
            pad = 10
            start = max(0, (idx[0] - pad) * frame)
            end = min(len(audio), (idx[-1] + 1 + pad) * frame)
            audio = audio[start:end]
    short = int(MIN_SECONDS * SR) - len(audio)
    if short > 0:  # pad very short utterances with silence up to MIN_SECONDS
        audio = np.pad(audio, (short // 2, short - short // 2))
    peak = np.abs(audio).max()
    if peak > 0:
        audio = audio * (PEAK / peak)
    return audio.astype(np.float32)


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_OGG_CRC = _ogg_crc_table()


def _ogg_fix_serial(data: bytes, serial: int) -> bytes:
    """libsndfile gives each Ogg stream a random serial number, so the bytes
    of an encode differ from run to run.  Rewrite the serial of every page
    (and its CRC) to make the files byte-for-byte reproducible."""
    buf = bytearray(data)
    pos = 0
    while pos < len(buf):
        if buf[pos:pos + 4] != b"OggS":
            raise ValueError("not an Ogg page")
        nseg = buf[pos + 26]
        size = 27 + nseg + sum(buf[pos + 27:pos + 27 + nseg])
        buf[pos + 14:pos + 18] = serial.to_bytes(4, "little")
        buf[pos + 22:pos + 26] = b"\0\0\0\0"
        crc = 0
        for byte in buf[pos:pos + size]:
            crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[(crc >> 24) ^ byte]
        buf[pos + 22:pos + 26] = crc.to_bytes(4, "little")
        pos += size
    return bytes(buf)


def write_ogg(path: Path, audio: np.ndarray) -> None:
    # Vorbis can overshoot the input peak by 10-20 %, so a clip normalised to
    # PEAK may decode to samples beyond +-1.0: lower the gain and re-encode
    # until the decoded peak is at most DECODED_PEAK_MAX.
    for _ in range(6):
        bio = io.BytesIO()
        sf.write(bio, audio, SR, format="OGG", subtype="VORBIS",
                 compression_level=VORBIS_COMPRESSION)
        bio.seek(0)
        decoded_peak = float(np.abs(sf.read(bio, dtype="float32")[0]).max())
        if decoded_peak <= DECODED_PEAK_MAX:
            break
        audio = (audio * (PEAK / decoded_peak)).astype(np.float32)
    else:
        sys.exit(f"{path.name}: decoded peak stays above {DECODED_PEAK_MAX}")
    serial = int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:4], "little")
    path.write_bytes(_ogg_fix_serial(bio.getvalue(), serial))


# ----------------------------------------------------------------------------
# Plan
# ----------------------------------------------------------------------------

def plan(seen: list[str], unseen: list[str], voices: list[str], seed: int) -> list[dict]:
    """Train and test renditions draw from one seeded stream; the validation
    renditions draw from a second one, so that changing the validation rule
    leaves the train and test clips as they are."""
    rng = random.Random(seed + 1)
    rng_val = random.Random(seed + 2)
    items = []

    def params(voice: str, r: random.Random = rng) -> tuple[float, float]:
        speed = round(r.uniform(*SPEED_RANGE), 2)
        pitch = round(r.uniform(*VOICES[voice][2]), 2)
        return speed, pitch

    nv = len(voices)
    for i, text in enumerate(seen):
        sid = f"S{i + 1:03d}"
        # train: two different voices, the pair rotating over the sentences
        pair = [voices[i % nv], voices[(i + 1) % nv]]
        train = []
        for r, voice in enumerate(pair):
            speed, pitch = params(voice)
            train.append(dict(sentence_id=sid, rendition=r, text=text, voice=voice,
                              speed=speed, pitch=pitch, split="train"))
        items.extend(train)
        # validation: one of the two train voices (alternating which one, so
        # each voice gets an equal share) at a new speed and pitch, redrawn
        # until both differ clearly from that voice's train rendition.
        ref = train[(i // nv) % 2]
        while True:
            speed, pitch = params(ref["voice"], rng_val)
            if (abs(speed - ref["speed"]) >= MIN_VAL_DELTA - 1e-9
                    and abs(pitch - ref["pitch"]) >= MIN_VAL_DELTA - 1e-9):
                break
        items.append(dict(sentence_id=sid, rendition=2, text=text, voice=ref["voice"],
                          speed=speed, pitch=pitch, split="validation", ref=ref))
    for i, text in enumerate(unseen):
        sid = f"U{i + 1:03d}"
        for r in range(UNSEEN_RENDITIONS):
            voice = voices[(i + r) % nv]
            speed, pitch = params(voice)
            items.append(dict(sentence_id=sid, rendition=r, text=text, voice=voice,
                              speed=speed, pitch=pitch, split="test"))
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"output folder (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--no-espeak", action="store_true",
                    help="use only the two festival voices")
    ap.add_argument("--list-sentences", action="store_true",
                    help="print the selected sentences and exit")
    args = ap.parse_args()

    for tool in ["festival"] + ([] if args.no_espeak else ["espeak-ng"]):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found; apt-get install -y festival festvox-italp16k "
                     "festvox-itapc16k espeak-ng fortunes-it")

    seen, unseen, pool_size = select_sentences(args.seed)
    if args.list_sentences:
        for k, s in enumerate(seen):
            print(f"S{k + 1:03d}\t{s}")
        for k, s in enumerate(unseen):
            print(f"U{k + 1:03d}\t{s}")
        print(f"({pool_size} candidate sentences)", file=sys.stderr)
        return

    voices = ["festival_lp", "festival_pc"] + ([] if args.no_espeak else ["espeak-ng_it"])
    items = plan(seen, unseen, voices, args.seed)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        if (out / split).exists():
            shutil.rmtree(out / split)
        (out / split).mkdir()

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        pending = items
        for attempt in range(4):
            for k, it in enumerate(pending):
                it["wav"] = str(tmp / f"{it['sentence_id']}_{it['rendition']}_{attempt}.wav")
            synthesize(pending, tmp)
            too_long = []
            for it in pending:
                it["audio"] = postprocess(it["wav"])
                dur = len(it["audio"]) / SR
                if dur > MAX_SECONDS:
                    it["speed"] = round(it["speed"] * dur / (MAX_SECONDS - 0.3), 2)
                    too_long.append(it)
            if not too_long:
                break
            pending = too_long
        else:
            sys.exit("some clips stay longer than the limit")

    # the too-long re-rendering above may change a speed: check the rule again
    for it in items:
        ref = it.get("ref")
        if ref and (abs(it["speed"] - ref["speed"]) < MIN_VAL_DELTA - 1e-9
                    or abs(it["pitch"] - ref["pitch"]) < MIN_VAL_DELTA - 1e-9):
            sys.exit(f"{it['sentence_id']}: validation speed/pitch too close to train")

    rows: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for it in items:
        fname = f"{it['sentence_id']}_r{it['rendition']}_{it['voice']}.ogg"
        write_ogg(out / it["split"] / fname, it["audio"])
        rows[it["split"]].append(dict(
            file_name=fname, transcription=it["text"], speaker=it["voice"],
            speed=f"{it['speed']:.2f}", pitch=f"{it['pitch']:.2f}",
            sentence_id=it["sentence_id"], seconds=len(it["audio"]) / SR))

    cols = ["file_name", "transcription", "speaker", "speed", "pitch", "sentence_id"]
    total_clips = total_sec = 0.0
    print(f"sentences: {len(seen)} seen + {len(unseen)} unseen "
          f"(from {pool_size} candidates), voices: {', '.join(voices)}")
    for split, rs in rows.items():
        rs.sort(key=lambda r: r["file_name"])
        with open(out / split / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore",
                               lineterminator="\n")
            w.writeheader()
            w.writerows(rs)
        secs = [r["seconds"] for r in rs]
        size = sum(f.stat().st_size for f in (out / split).iterdir())
        total_clips += len(rs)
        total_sec += sum(secs)
        print(f"{split:>10}: {len(rs):4d} clips, {len({r['sentence_id'] for r in rs}):3d} "
              f"sentences, {sum(secs) / 3600:.3f} h ({sum(secs) / 60:.1f} min), "
              f"{min(secs):.2f}-{max(secs):.2f} s/clip, {size / 1e6:.2f} MB")
    total_size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{'total':>10}: {int(total_clips):4d} clips, {total_sec / 3600:.3f} h "
          f"({total_sec / 60:.1f} min), {total_size / 1e6:.2f} MB in {out}")
    if total_size > SIZE_LIMIT_MB * 1e6:
        sys.exit(f"output is larger than {SIZE_LIMIT_MB} MB: raise VORBIS_COMPRESSION")


if __name__ == "__main__":
    main()
