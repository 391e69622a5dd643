"""Fine-tuning tasks on pretrained data2vec encoders."""
