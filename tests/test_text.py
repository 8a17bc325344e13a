import numpy as np

from mmkeras.data import text


def test_standardize_lowers_and_strips_punctuation_in_any_script():
    assert text.standardize_list(["A Red,  CIRCLE!", " 你好，世界。", "it's -- fine", "Красный КРУГ."]) == [
        "a red circle", "你 好 世 界", "it s fine", "красный круг"]


def test_start_and_end_tokens_survive_and_user_brackets_do_not():
    wrapped = text.add_start_end(["[start] a dog"]).numpy()[0].decode()
    assert wrapped == "[start] start a dog [end]"


def test_vocabulary_and_unknown_words():
    vectorizer = text.build_vectorizer(["a red circle", "a blue square"], max_caption_length=5)
    vocabulary = text.vectorizer_vocabulary(vectorizer)
    assert vocabulary[:2] == [text.PAD, text.UNKNOWN]
    assert set(vocabulary[2:]) == {"a", "red", "blue", "circle", "square", text.START, text.END}
    ids = vectorizer(text.add_start_end(["a purple circle"])).numpy()[0]
    assert ids.shape == (7,)
    assert ids[2] == 1, "a word outside the vocabulary becomes the unknown token"
    assert list(ids[5:]) == [0, 0], "padding fills the rest"


def test_long_captions_are_cut_to_the_maximum_length():
    vectorizer = text.build_vectorizer(["a b c d e f g h"], max_caption_length=3)
    ids = vectorizer(text.add_start_end(["a b c d e f g h"])).numpy()[0]
    assert len(ids) == 5 and ids[0] == text.vectorizer_vocabulary(vectorizer).index(text.START)


def test_words_past_the_cut_and_past_the_cap_stay_out_of_the_vocabulary():
    one_long_caption = " ".join(f"w{i}" for i in range(50_000))  # a million would be the attack
    vocabulary = text.vectorizer_vocabulary(text.build_vectorizer([one_long_caption], max_caption_length=10))
    assert len(vocabulary) == 2 + 1 + 11 + 1, "padding, unknown, start, the 11 words seen, end"
    assert text.END in vocabulary
    many_words = [f"word{i} word{i}" for i in range(1000)]
    vectorizer = text.build_vectorizer(many_words, max_caption_length=5, max_vocabulary=100)
    assert len(text.vectorizer_vocabulary(vectorizer)) == 100


def test_the_vocabulary_is_capped_by_default():
    assert text.build_vectorizer.__defaults__ == (text.MAX_VOCABULARY,) and text.MAX_VOCABULARY == 20_000


def test_vectorizer_for_a_stored_vocabulary_gives_the_same_ids():
    vectorizer = text.build_vectorizer(["a red circle", "a blue square"], max_caption_length=5)
    again = text.vectorizer_for(text.vectorizer_vocabulary(vectorizer), max_caption_length=5)
    captions = text.add_start_end(["a blue circle", "zebra"])
    np.testing.assert_array_equal(vectorizer(captions).numpy(), again(captions).numpy())


def test_ids_to_captions_stops_at_the_end_token():
    vocabulary = [text.PAD, text.UNKNOWN, text.START, text.END, "a", "dog"]
    ids = np.array([[4, 5, 3, 5, 5], [2, 4, 0, 0, 0], [5, 5, 5, 5, 5]])
    assert text.ids_to_captions(ids, vocabulary) == ["a dog", "a", "dog dog dog dog dog"]
