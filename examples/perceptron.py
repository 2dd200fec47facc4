"""The lecture's perceptron: z = w0 + x . W, y = sigmoid(z), and its gradients by the chain rule."""
import backprop as bp

x = bp.tensor([[-1.0, 2.0]])        # the input
w = bp.Variable([[3.0], [-2.0]])    # W = (3, -2)
b = bp.Variable([1.0])              # w0 = 1

with bp.GradientTape() as tape:
    z = bp.matmul(x, w) + b
    y = bp.sigmoid(z)

dw, db = tape.gradient(y, [w, b])
print(f"z = {z.numpy().item():g}, y = sigmoid(z) = {y.numpy().item():.5f}")
print(f"dy/dW = {dw.numpy().ravel()}, dy/dw0 = {db.numpy().ravel()}")
