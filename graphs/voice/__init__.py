"""Voice chat: transcribe the question, answer it in the chat thread, speak the answer."""
