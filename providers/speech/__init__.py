"""Speech providers: the embedded Whisper model, OpenAI audio and ElevenLabs, one interface."""
