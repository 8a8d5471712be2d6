-- A short example quiz the owner can edit or delete.
return {
  settings = { { title = "Peer-to-peer basics", intro = "Three questions, thirty seconds each is plenty.", mode = "quiz", time_limit = 0, show_results = 1, open = 1 } },
  questions = {
    { position = 1, text = "Where does this quiz's data live?", kind = "single", options = '["On a cloud server","On the quiz owner\'s peer","In your browser only"]' },
    { position = 2, text = "Which of these identify a peer?", kind = "multiple", options = '["Its peer ID","Its label","Its public key"]' },
    { position = 3, text = "What would you build with Goop²?", kind = "text", options = "[]" },
  },
  answer_key = {
    { question_id = 1, correct = "[1]" },
    { question_id = 2, correct = "[0,2]" },
  },
}
